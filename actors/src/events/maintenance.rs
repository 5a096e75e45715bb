//! Maintenance windows: while one is active, an integration is still checked and its results
//! recorded, but its alerts are held; when it ends, one event tells what changed meanwhile.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use tokio::time::Instant;
use uuid::Uuid;

/// How a window repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recurrence {
    Daily,
    Weekly,
}

impl Recurrence {
    pub const fn as_str(self) -> &'static str {
        match self {
            Recurrence::Daily => "daily",
            Recurrence::Weekly => "weekly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Recurrence::Daily),
            "weekly" => Some(Recurrence::Weekly),
            _ => None,
        }
    }

    fn period(self) -> Duration {
        match self {
            Recurrence::Daily => Duration::days(1),
            Recurrence::Weekly => Duration::weeks(1),
        }
    }
}

/// Why a window is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWindow {
    #[error("endsAt must be after startsAt")]
    EndsBeforeStart,
    #[error("a {0} window must be shorter than its period")]
    LongerThanPeriod(&'static str),
    #[error("until must be after startsAt")]
    UntilBeforeStart,
}

/// One maintenance window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub recurrence: Option<Recurrence>,
    pub until: Option<DateTime<Utc>>,
}

impl Window {
    /// Checks the window's shape.
    ///
    /// # Errors
    /// [`InvalidWindow`].
    pub fn validate(&self) -> Result<(), InvalidWindow> {
        if self.ends_at <= self.starts_at {
            return Err(InvalidWindow::EndsBeforeStart);
        }
        if let Some(r) = self.recurrence
            && self.ends_at - self.starts_at >= r.period()
        {
            return Err(InvalidWindow::LongerThanPeriod(r.as_str()));
        }
        if let Some(until) = self.until
            && until <= self.starts_at
        {
            return Err(InvalidWindow::UntilBeforeStart);
        }
        Ok(())
    }

    /// The end of the occurrence active at `now`, or `None` when none is.
    pub fn active_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.occurrence_start(now)?;
        let end = start + (self.ends_at - self.starts_at);
        (now < end).then_some(end)
    }

    /// Whether no occurrence can be active at or after `now`.
    pub fn is_over(&self, now: DateTime<Utc>) -> bool {
        match self.recurrence {
            None => now >= self.ends_at,
            Some(_) => self
                .until
                .is_some_and(|until| now >= until + (self.ends_at - self.starts_at)),
        }
    }

    /// The start of the latest occurrence that began at or before `now`.
    fn occurrence_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now < self.starts_at {
            return None;
        }
        let Some(recurrence) = self.recurrence else {
            return Some(self.starts_at);
        };
        let period = recurrence.period();
        let elapsed = now - self.starts_at;
        let n = elapsed.num_seconds() / period.num_seconds();
        let start = self.starts_at + period * i32::try_from(n).unwrap_or(i32::MAX);
        match self.until {
            Some(until) if start >= until => None,
            _ => Some(start),
        }
    }
}

/// How long a deleted window is remembered, so a reconciliation read before the deletion
/// cannot bring it back.
const TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The windows of every integration, for the alert policy.
///
/// Windows arrive one change at a time and, in a cluster, also as a whole from the database
/// ([`MaintenanceIndex::reconcile`]) to repair a missed change. Each window remembers when it
/// was learned and each deletion when it was made, so a reconciliation never undoes a change
/// that came after its read.
#[derive(Debug, Default)]
pub struct MaintenanceIndex {
    by_integration: HashMap<Uuid, Vec<Window>>,
    learned: HashMap<Uuid, Instant>,
    removed: HashMap<Uuid, Instant>,
}

impl MaintenanceIndex {
    pub fn insert(&mut self, window: Window) {
        self.learned.insert(window.id, Instant::now());
        self.removed.remove(&window.id);
        let windows = self
            .by_integration
            .entry(window.integration_id)
            .or_default();
        windows.retain(|w| w.id != window.id);
        windows.push(window);
    }

    pub fn remove(&mut self, integration_id: Uuid, window_id: Uuid) {
        self.removed.insert(window_id, Instant::now());
        self.forget(integration_id, window_id);
    }

    fn forget(&mut self, integration_id: Uuid, window_id: Uuid) {
        self.learned.remove(&window_id);
        if let Some(windows) = self.by_integration.get_mut(&integration_id) {
            windows.retain(|w| w.id != window_id);
            if windows.is_empty() {
                self.by_integration.remove(&integration_id);
            }
        }
    }

    /// Forgets every window of a deleted integration.
    pub fn remove_integration(&mut self, integration_id: Uuid) {
        for w in self
            .by_integration
            .remove(&integration_id)
            .unwrap_or_default()
        {
            self.learned.remove(&w.id);
        }
    }

    /// Brings the index in line with `windows`, every window that could still become active as
    /// read from the database at `read_at`: a window missing from the read is dropped and one
    /// the index lacks is added, unless the index learned of it, or of its deletion, after the
    /// read (that change is newer than the read).
    pub fn reconcile(&mut self, windows: &[Window], read_at: Instant) {
        let now = Instant::now();
        self.removed
            .retain(|_, at| now.saturating_duration_since(*at) < TOMBSTONE_TTL);
        let listed: std::collections::HashSet<Uuid> = windows.iter().map(|w| w.id).collect();
        let missed_deletions: Vec<(Uuid, Uuid)> = self
            .by_integration
            .values()
            .flatten()
            .filter(|w| !listed.contains(&w.id))
            .filter(|w| self.learned.get(&w.id).is_none_or(|at| *at < read_at))
            .map(|w| (w.integration_id, w.id))
            .collect();
        for (integration_id, window_id) in missed_deletions {
            self.forget(integration_id, window_id);
        }
        for w in windows {
            let known = self.learned.contains_key(&w.id);
            let deleted_since = self.removed.get(&w.id).is_some_and(|at| *at >= read_at);
            if !known && !deleted_since {
                self.insert(w.clone());
            }
        }
    }

    /// The end of the latest-ending window active for the integration at `now`.
    pub fn active_until(&self, integration_id: Uuid, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.by_integration
            .get(&integration_id)?
            .iter()
            .filter_map(|w| w.active_until(now))
            .max()
    }

    /// Drops windows that can no longer become active.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let learned = &mut self.learned;
        self.by_integration.retain(|_, windows| {
            windows.retain(|w| {
                let over = w.is_over(now);
                if over {
                    learned.remove(&w.id);
                }
                !over
            });
            !windows.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn window(start: &str, end: &str, recurrence: Option<Recurrence>) -> Window {
        Window {
            id: Uuid::now_v7(),
            integration_id: Uuid::nil(),
            starts_at: at(start),
            ends_at: at(end),
            recurrence,
            until: None,
        }
    }

    #[test]
    fn a_single_window_is_active_between_its_start_and_end() {
        let w = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        assert_eq!(w.active_until(at("2026-11-28T09:59:59Z")), None);
        assert_eq!(
            w.active_until(at("2026-11-28T10:00:00Z")),
            Some(at("2026-11-28T11:00:00Z"))
        );
        assert_eq!(w.active_until(at("2026-11-28T11:00:00Z")), None);
        assert!(w.is_over(at("2026-11-28T11:00:00Z")));
    }

    #[test]
    fn a_daily_window_recurs_until_its_end() {
        let mut w = window(
            "2026-11-28T02:00:00Z",
            "2026-11-28T03:00:00Z",
            Some(Recurrence::Daily),
        );
        w.until = Some(at("2026-12-01T00:00:00Z"));
        assert_eq!(
            w.active_until(at("2026-11-30T02:30:00Z")),
            Some(at("2026-11-30T03:00:00Z"))
        );
        assert_eq!(w.active_until(at("2026-11-30T03:30:00Z")), None);
        assert_eq!(w.active_until(at("2026-12-01T02:30:00Z")), None);
        assert!(!w.is_over(at("2026-11-30T12:00:00Z")));
        assert!(w.is_over(at("2026-12-01T01:00:00Z")));
    }

    #[test]
    fn windows_are_validated() {
        let w = window("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z", None);
        assert_eq!(w.validate(), Err(InvalidWindow::EndsBeforeStart));
        let w = window(
            "2026-11-28T10:00:00Z",
            "2026-11-29T10:00:00Z",
            Some(Recurrence::Daily),
        );
        assert_eq!(w.validate(), Err(InvalidWindow::LongerThanPeriod("daily")));
        let w = window(
            "2026-11-28T10:00:00Z",
            "2026-11-29T10:00:00Z",
            Some(Recurrence::Weekly),
        );
        assert_eq!(w.validate(), Ok(()));
    }

    #[test]
    fn the_index_answers_per_integration_and_prunes() {
        let mut index = MaintenanceIndex::default();
        let mut w = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        w.integration_id = Uuid::from_u128(1);
        index.insert(w.clone());
        assert!(
            index
                .active_until(Uuid::from_u128(1), at("2026-11-28T10:30:00Z"))
                .is_some()
        );
        assert!(
            index
                .active_until(Uuid::from_u128(2), at("2026-11-28T10:30:00Z"))
                .is_none()
        );
        index.prune(at("2026-11-28T12:00:00Z"));
        assert!(index.by_integration.is_empty());
        index.insert(w.clone());
        index.remove(w.integration_id, w.id);
        assert!(index.by_integration.is_empty());
    }

    fn ids(index: &MaintenanceIndex) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = index
            .by_integration
            .values()
            .flatten()
            .map(|w| w.id)
            .collect();
        ids.sort();
        ids
    }

    fn tick() -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }

    #[tokio::test(start_paused = true)]
    async fn reconciling_repairs_a_missed_creation_and_a_missed_deletion() {
        let mut index = MaintenanceIndex::default();
        let kept = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        let deleted_elsewhere = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        let created_elsewhere = window("2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z", None);
        index.insert(kept.clone());
        index.insert(deleted_elsewhere.clone());
        tokio::time::advance(tick()).await;

        let read_at = Instant::now();
        index.reconcile(&[kept.clone(), created_elsewhere.clone()], read_at);
        let mut want = vec![kept.id, created_elsewhere.id];
        want.sort();
        assert_eq!(ids(&index), want);

        // Reconciling again with the same read changes nothing.
        index.reconcile(&[kept.clone(), created_elsewhere.clone()], read_at);
        assert_eq!(ids(&index), want);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconciliation_never_undoes_a_change_newer_than_its_read() {
        let mut index = MaintenanceIndex::default();
        let old = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        index.insert(old.clone());
        tokio::time::advance(tick()).await;

        // The database is read: it holds `old` only.
        let read_at = Instant::now();
        tokio::time::advance(tick()).await;
        // Meanwhile a window is created and `old` is deleted, and both changes arrive.
        let created = window("2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z", None);
        index.insert(created.clone());
        index.remove(old.integration_id, old.id);

        index.reconcile(std::slice::from_ref(&old), read_at);
        assert_eq!(
            ids(&index),
            vec![created.id],
            "the new window is kept and the deleted one stays deleted"
        );

        // A read made after both changes sees them, and agrees.
        tokio::time::advance(tick()).await;
        index.reconcile(std::slice::from_ref(&created), Instant::now());
        assert_eq!(ids(&index), vec![created.id]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deletion_is_remembered_only_for_a_while() {
        let mut index = MaintenanceIndex::default();
        let w = window("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", None);
        index.insert(w.clone());
        index.remove(w.integration_id, w.id);
        assert_eq!(index.removed.len(), 1);
        tokio::time::advance(TOMBSTONE_TTL + tick()).await;
        index.reconcile(&[], Instant::now());
        assert!(index.removed.is_empty());
        assert!(index.learned.is_empty());
        assert!(index.by_integration.is_empty());
    }
}
