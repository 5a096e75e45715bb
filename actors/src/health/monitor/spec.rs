//! [`MonitorSpec`]: what a monitor knows of its integration, shared with the supervisor so a
//! restarted monitor starts from the same spec and the last status.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::SharedConnector;
use uuid::Uuid;

use crate::health::policy::Status;

/// What a monitor needs to know of its integration. Shared with the supervisor, which restarts
/// the monitor from it.
pub struct MonitorSpec {
    pub id: Uuid,
    pub tenant: Arc<str>,
    pub provider_type: Arc<str>,
    /// The catalog version this spec was built from; older specs never replace newer ones.
    pub version: i64,
    pub interval: Duration,
    pub paused: bool,
    /// The built connector, or why it could not be built.
    pub connector: Result<SharedConnector, Arc<str>>,
    /// The latest status, kept here so a restarted monitor continues from it.
    status: AtomicU8,
    /// When the integration was last checked (Unix milliseconds, 0 for never), so a monitor
    /// started elsewhere (a takeover, a restart) keeps the integration's phase.
    last_checked_ms: i64,
}

/// The share of an interval over which integrations that missed one check are caught up.
pub const CATCH_UP_SHARE: f64 = 0.25;

const STATUSES: [Status; 6] = [
    Status::Unknown,
    Status::Healthy,
    Status::Degraded,
    Status::Unhealthy,
    Status::Paused,
    Status::Error,
];

impl MonitorSpec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Uuid,
        tenant: Arc<str>,
        provider_type: Arc<str>,
        version: i64,
        interval: Duration,
        paused: bool,
        connector: Result<SharedConnector, Arc<str>>,
        status: Status,
    ) -> Self {
        let spec = Self {
            id,
            tenant,
            provider_type,
            version,
            interval,
            paused,
            connector,
            status: AtomicU8::new(0),
            last_checked_ms: 0,
        };
        spec.set_status(status);
        spec
    }

    /// The spec of an integration last checked at `at`.
    #[must_use]
    pub fn with_last_check(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.last_checked_ms = at.map_or(0, |at| at.timestamp_millis().max(1));
        self
    }

    /// How long from `now` the monitor's first check is due, `draw` uniform in `[0, 1)`:
    /// - one interval after the last check when that is still ahead: the integration keeps its
    ///   phase, so a takeover or a restart causes no burst;
    /// - when it fell due less than an interval ago (it missed one check while its shard had no
    ///   owner, or during a restart), within the first [`CATCH_UP_SHARE`] of an interval: only
    ///   the integrations due during the gap are in that case, so the extra load is bounded by
    ///   the gap's share of the interval;
    /// - otherwise (never checked, or overdue by more: a fleet starting after a long stop)
    ///   anywhere in one interval, so the fleet spreads out.
    pub fn first_check_in(&self, now: DateTime<Utc>, draw: f64) -> Duration {
        let spread = self.interval.mul_f64(draw);
        if self.last_checked_ms == 0 {
            return spread;
        }
        let interval_ms = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        let due_in_ms = self
            .last_checked_ms
            .saturating_add(interval_ms)
            .saturating_sub(now.timestamp_millis());
        match u64::try_from(due_in_ms) {
            Ok(ms) if ms > 0 => Duration::from_millis(ms).min(self.interval),
            _ if due_in_ms > -interval_ms => self.interval.mul_f64(draw * CATCH_UP_SHARE),
            _ => spread,
        }
    }

    pub fn status(&self) -> Status {
        STATUSES[usize::from(self.status.load(Ordering::Relaxed)).min(STATUSES.len() - 1)]
    }

    pub fn set_status(&self, status: Status) {
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(0);
        self.status.store(i as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(last: Option<DateTime<Utc>>) -> MonitorSpec {
        MonitorSpec::new(
            Uuid::nil(),
            Arc::from("t"),
            Arc::from("inmemory"),
            1,
            Duration::from_secs(300),
            false,
            Err(Arc::from("none")),
            Status::Unknown,
        )
        .with_last_check(last)
    }

    #[test]
    fn a_known_phase_is_kept_a_missed_check_caught_up_and_an_unknown_or_long_overdue_one_spreads() {
        let now = Utc::now();
        let checked = now - chrono::Duration::seconds(100);
        // Due 200 s from now, whatever the draw.
        for draw in [0.0, 0.5, 0.99] {
            assert_eq!(
                spec(Some(checked)).first_check_in(now, draw),
                Duration::from_secs(200)
            );
        }
        assert_eq!(
            spec(None).first_check_in(now, 0.5),
            Duration::from_secs(150)
        );
        // Due 30 s ago (missed one check): within the first 75 s.
        let missed = now - chrono::Duration::seconds(330);
        assert_eq!(spec(Some(missed)).first_check_in(now, 0.0), Duration::ZERO);
        assert_eq!(
            spec(Some(missed)).first_check_in(now, 0.5),
            Duration::from_millis(37_500)
        );
        assert!(spec(Some(missed)).first_check_in(now, 0.999) < Duration::from_secs(75));
        // Due one interval ago or more: anywhere in the interval.
        for late in [600, 900, 86_400] {
            let overdue = now - chrono::Duration::seconds(late);
            assert_eq!(
                spec(Some(overdue)).first_check_in(now, 0.1),
                Duration::from_secs(30)
            );
        }
    }
}
