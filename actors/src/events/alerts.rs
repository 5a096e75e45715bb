//! Noise control: which status changes become events.
//!
//! Every transition becomes a `health.changed` event (`health.recovered` when it returns to
//! healthy from degraded, unhealthy or error), except that:
//! - while an integration stays unhealthy or in error, a `health.reminder` repeats at the
//!   reminder interval;
//! - more than `flap_transitions` transitions within `flap_window` give one
//!   `health.flapping` event (`flapping: true`), then quiet until no transition has happened
//!   for `stable_after`, which gives `health.flapping` with `flapping: false` and the status;
//! - during a maintenance window nothing is emitted; when it ends, one event tells the status
//!   if it differs from the last one announced;
//! - a credential that expires within `credential_warning` gives a `credential.expiring`
//!   event, repeated at most every `credential_reminder`.
//!
//! Only changes between observed statuses count toward flapping: learning the first status
//! (out of `unknown`), pausing and resuming do not.
//!
//! [`Alerts`] keeps state only for integrations that are not healthy or changed recently, so a
//! healthy fleet of a million costs nothing here, including right after it started. It is
//! driven by the result writer, which writes the events it returns in the same transaction as
//! the status change.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::maintenance::{MaintenanceIndex, Window};
use super::{EventKind, NewEvent};
use crate::status::Status;

/// The `[events.alerts]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Interval of reminders while an integration stays unhealthy; 0 turns them off.
    #[serde(default = "default_reminder")]
    pub reminder_interval_seconds: u64,
    /// More transitions than this within `flap_window_seconds` is flapping.
    #[serde(default = "default_flap_transitions")]
    pub flap_transitions: usize,
    #[serde(default = "default_flap_window")]
    pub flap_window_seconds: u64,
    /// A flapping integration is stable again after this long without a transition.
    #[serde(default = "default_stable_after")]
    pub stable_after_seconds: u64,
    /// Warn when a credential expires within this long.
    #[serde(default = "default_credential_warning")]
    pub credential_warning_seconds: u64,
    /// Repeat the warning at most this often.
    #[serde(default = "default_credential_reminder")]
    pub credential_reminder_seconds: u64,
}

const fn default_reminder() -> u64 {
    3600
}
const fn default_flap_transitions() -> usize {
    5
}
const fn default_flap_window() -> u64 {
    900
}
const fn default_stable_after() -> u64 {
    900
}
const fn default_credential_warning() -> u64 {
    14 * 86_400
}
const fn default_credential_reminder() -> u64 {
    86_400
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            reminder_interval_seconds: default_reminder(),
            flap_transitions: default_flap_transitions(),
            flap_window_seconds: default_flap_window(),
            stable_after_seconds: default_stable_after(),
            credential_warning_seconds: default_credential_warning(),
            credential_reminder_seconds: default_credential_reminder(),
        }
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::from_std(Duration::from_secs(s)).unwrap_or(chrono::Duration::MAX)
}

/// A status change reported by a monitor or its supervisor.
#[derive(Clone, Debug)]
pub struct Transition {
    pub integration_id: Uuid,
    pub tenant: Arc<str>,
    pub provider_type: Arc<str>,
    pub from: Status,
    pub to: Status,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
    pub latency_ms: Option<i64>,
    pub checked_at: DateTime<Utc>,
    /// Set when the supervisor gave up restarting a crashing monitor: the restarts counted.
    pub crash_loop: Option<u32>,
}

/// What a check tells about the integration's credential.
#[derive(Clone, Debug)]
pub struct CredentialNotice {
    pub integration_id: Uuid,
    pub tenant: Arc<str>,
    pub provider_type: Arc<str>,
    pub expires_at: DateTime<Utc>,
}

/// Changes to the maintenance windows the policy knows.
#[derive(Clone, Debug)]
pub enum MaintenanceChange {
    Upsert(Window),
    Remove {
        integration_id: Uuid,
        window_id: Uuid,
    },
    /// Every window that can still become active, read from the database at `read_at`.
    Reconcile {
        windows: Arc<Vec<Window>>,
        read_at: tokio::time::Instant,
    },
}

/// Per-integration alert state, kept only while there is something to remember.
#[derive(Debug)]
struct Entry {
    tenant: Arc<str>,
    provider_type: Arc<str>,
    status: Status,
    reason: Option<&'static str>,
    /// The status consumers were last told.
    announced: Status,
    transitions: VecDeque<DateTime<Utc>>,
    flapping: bool,
    /// Unhealthy or in error since.
    bad_since: Option<DateTime<Utc>>,
    next_reminder: Option<DateTime<Utc>>,
    reminders: u32,
    /// Something changed during a maintenance window.
    held: bool,
}

impl Entry {
    fn idle(&self) -> bool {
        !self.flapping && !self.held && self.bad_since.is_none() && self.transitions.is_empty()
    }
}

fn is_bad(status: Status) -> bool {
    matches!(status, Status::Unhealthy | Status::Error)
}

fn is_failing(status: Status) -> bool {
    matches!(status, Status::Degraded | Status::Unhealthy | Status::Error)
}

/// Whether a transition from or to `status` counts toward flapping: only changes between
/// observed statuses do.
fn counts_as_flap(status: Status) -> bool {
    !matches!(status, Status::Unknown | Status::Paused)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The noise-control policy.
#[derive(Debug)]
pub struct Alerts {
    settings: AlertSettings,
    entries: HashMap<Uuid, Entry>,
    /// When each expiring credential was last warned about.
    credentials: HashMap<Uuid, DateTime<Utc>>,
    maintenance: MaintenanceIndex,
}

impl Alerts {
    pub fn new(settings: AlertSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            credentials: HashMap::new(),
            maintenance: MaintenanceIndex::default(),
        }
    }

    /// Remembers an integration that was already unhealthy or in error when the daemon
    /// started, so reminders continue; does nothing when it is already known.
    pub fn seed(
        &mut self,
        integration_id: Uuid,
        tenant: Arc<str>,
        provider_type: Arc<str>,
        status: Status,
        now: DateTime<Utc>,
    ) {
        if !is_bad(status) || self.entries.contains_key(&integration_id) {
            return;
        }
        self.entries.insert(
            integration_id,
            Entry {
                tenant,
                provider_type,
                status,
                reason: None,
                announced: status,
                transitions: VecDeque::new(),
                flapping: false,
                bad_since: Some(now),
                next_reminder: self.first_reminder(now),
                reminders: 0,
                held: false,
            },
        );
    }

    /// Forgets a deleted integration.
    pub fn forget(&mut self, integration_id: Uuid) {
        self.entries.remove(&integration_id);
        self.credentials.remove(&integration_id);
        self.maintenance.remove_integration(integration_id);
    }

    pub fn maintenance(&mut self, change: MaintenanceChange) {
        match change {
            MaintenanceChange::Upsert(window) => self.maintenance.insert(window),
            MaintenanceChange::Remove {
                integration_id,
                window_id,
            } => self.maintenance.remove(integration_id, window_id),
            MaintenanceChange::Reconcile { windows, read_at } => {
                self.maintenance.reconcile(&windows, read_at);
            }
        }
    }

    /// Integrations with alert state (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn first_reminder(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.settings.reminder_interval_seconds > 0)
            .then(|| now + secs(self.settings.reminder_interval_seconds))
    }

    /// The events a transition gives.
    pub fn on_transition(&mut self, t: &Transition, now: DateTime<Utc>) -> Vec<NewEvent> {
        let window = secs(self.settings.flap_window_seconds);
        let first_reminder = self.first_reminder(now);
        let in_maintenance = self
            .maintenance
            .active_until(t.integration_id, now)
            .is_some();
        let flap_limit = self.settings.flap_transitions;
        let entry = self
            .entries
            .entry(t.integration_id)
            .or_insert_with(|| Entry {
                tenant: t.tenant.clone(),
                provider_type: t.provider_type.clone(),
                status: t.from,
                reason: None,
                announced: t.from,
                transitions: VecDeque::new(),
                flapping: false,
                bad_since: None,
                next_reminder: None,
                reminders: 0,
                held: false,
            });
        entry.provider_type = t.provider_type.clone();
        entry.reason = t.reason;
        if entry.status == t.to && t.crash_loop.is_none() {
            if entry.idle() {
                self.entries.remove(&t.integration_id);
            }
            return Vec::new();
        }
        entry.status = t.to;
        if is_bad(t.to) {
            if entry.bad_since.is_none() {
                entry.bad_since = Some(now);
                entry.next_reminder = first_reminder;
                entry.reminders = 0;
            }
        } else {
            entry.bad_since = None;
            entry.next_reminder = None;
        }
        // Learning the first status, pausing and resuming are not flaps.
        if counts_as_flap(t.from) && counts_as_flap(t.to) {
            entry.transitions.push_back(now);
        }
        while entry
            .transitions
            .front()
            .is_some_and(|at| *at <= now - window)
        {
            entry.transitions.pop_front();
        }

        let mut events = Vec::new();
        if in_maintenance {
            entry.held = true;
        } else if let Some(restarts) = t.crash_loop {
            events.push(health_event(
                EventKind::PluginCrashLoop,
                t.integration_id,
                entry,
                now,
                json!({
                    "previousStatus": entry.announced.as_str(),
                    "restarts": restarts,
                    "message": t.message,
                }),
            ));
            entry.announced = t.to;
        } else if entry.flapping {
            // Quiet until stable.
        } else if entry.transitions.len() > flap_limit {
            entry.flapping = true;
            let transitions = entry.transitions.len();
            events.push(health_event(
                EventKind::HealthFlapping,
                t.integration_id,
                entry,
                now,
                json!({
                    "flapping": true,
                    "previousStatus": entry.announced.as_str(),
                    "transitions": transitions,
                    "windowSeconds": window.num_seconds(),
                }),
            ));
            entry.announced = t.to;
        } else {
            let kind = if t.to == Status::Healthy && is_failing(entry.announced) {
                EventKind::HealthRecovered
            } else {
                EventKind::HealthChanged
            };
            events.push(health_event(
                kind,
                t.integration_id,
                entry,
                now,
                json!({
                    "previousStatus": entry.announced.as_str(),
                    "message": t.message,
                    "latencyMs": t.latency_ms,
                    "checkedAt": stamp(t.checked_at),
                }),
            ));
            entry.announced = t.to;
        }
        if entry.idle() {
            self.entries.remove(&t.integration_id);
        }
        events
    }

    /// The event of an external plugin whose process keeps failing (`t.crash_loop` failures
    /// in a row), unless the integration is in maintenance.
    pub fn on_plugin_crash_loop(&mut self, t: &Transition, now: DateTime<Utc>) -> Option<NewEvent> {
        if self
            .maintenance
            .active_until(t.integration_id, now)
            .is_some()
        {
            return None;
        }
        Some(NewEvent::new(
            EventKind::PluginCrashLoop,
            t.tenant.clone(),
            Some(t.integration_id),
            now,
            json!({
                "integrationId": t.integration_id.to_string(),
                "integrationType": &*t.provider_type,
                "tenant": &*t.tenant,
                "status": t.to.as_str(),
                "reason": t.reason,
                "processFailures": t.crash_loop,
                "message": t.message,
            }),
        ))
    }

    /// The event a check's credential notice gives, if any.
    pub fn on_credential(&mut self, c: &CredentialNotice, now: DateTime<Utc>) -> Option<NewEvent> {
        if c.expires_at - now > secs(self.settings.credential_warning_seconds) {
            self.credentials.remove(&c.integration_id);
            return None;
        }
        if self
            .credentials
            .get(&c.integration_id)
            .is_some_and(|last| now - *last < secs(self.settings.credential_reminder_seconds))
            || self
                .maintenance
                .active_until(c.integration_id, now)
                .is_some()
        {
            return None;
        }
        self.credentials.insert(c.integration_id, now);
        Some(NewEvent::new(
            EventKind::CredentialExpiring,
            c.tenant.clone(),
            Some(c.integration_id),
            now,
            json!({
                "integrationId": c.integration_id.to_string(),
                "integrationType": &*c.provider_type,
                "tenant": &*c.tenant,
                "expiresAt": stamp(c.expires_at),
                "expiresInSeconds": (c.expires_at - now).num_seconds().max(0),
            }),
        ))
    }

    /// The events that time alone gives: reminders, the end of flapping, the end of
    /// maintenance windows.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<NewEvent> {
        let window = secs(self.settings.flap_window_seconds);
        let stable_after = secs(self.settings.stable_after_seconds);
        let reminder = secs(self.settings.reminder_interval_seconds);
        let reminders_on = self.settings.reminder_interval_seconds > 0;
        self.maintenance.prune(now);
        let mut events = Vec::new();
        for (id, entry) in &mut self.entries {
            let last_transition = entry.transitions.back().copied();
            while entry
                .transitions
                .front()
                .is_some_and(|at| *at <= now - window)
            {
                entry.transitions.pop_front();
            }
            if self.maintenance.active_until(*id, now).is_some() {
                continue;
            }
            if entry.flapping {
                let quiet = last_transition.is_none_or(|at| now - at >= stable_after);
                if !quiet {
                    continue;
                }
                entry.flapping = false;
                entry.held = false;
                events.push(health_event(
                    EventKind::HealthFlapping,
                    *id,
                    entry,
                    now,
                    json!({ "flapping": false, "previousStatus": entry.announced.as_str() }),
                ));
                entry.announced = entry.status;
                if entry.bad_since.is_some() && reminders_on {
                    entry.next_reminder = Some(now + reminder);
                }
            }
            if entry.held {
                entry.held = false;
                if entry.status != entry.announced {
                    let kind = if entry.status == Status::Healthy && is_failing(entry.announced) {
                        EventKind::HealthRecovered
                    } else {
                        EventKind::HealthChanged
                    };
                    events.push(health_event(
                        kind,
                        *id,
                        entry,
                        now,
                        json!({
                            "previousStatus": entry.announced.as_str(),
                            "afterMaintenance": true,
                        }),
                    ));
                    entry.announced = entry.status;
                }
                if entry.bad_since.is_some() && reminders_on {
                    entry.next_reminder = Some(now + reminder);
                }
            }
            if let (Some(since), Some(due)) = (entry.bad_since, entry.next_reminder)
                && due <= now
            {
                entry.reminders += 1;
                let count = entry.reminders;
                events.push(health_event(
                    EventKind::HealthReminder,
                    *id,
                    entry,
                    now,
                    json!({
                        "since": stamp(since),
                        "unhealthyForSeconds": (now - since).num_seconds(),
                        "reminder": count,
                    }),
                ));
                entry.next_reminder = Some(due + reminder).filter(|_| reminders_on);
                if entry.next_reminder.is_some_and(|next| next <= now) {
                    entry.next_reminder = Some(now + reminder);
                }
            }
        }
        self.entries.retain(|_, e| !e.idle());
        events
    }
}

/// A health event about `entry`'s integration, with the common data fields merged into
/// `extra`.
fn health_event(
    kind: EventKind,
    integration_id: Uuid,
    entry: &Entry,
    now: DateTime<Utc>,
    extra: Value,
) -> NewEvent {
    let mut data = json!({
        "integrationId": integration_id.to_string(),
        "integrationType": &*entry.provider_type,
        "tenant": &*entry.tenant,
        "status": entry.status.as_str(),
        "reason": entry.reason,
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        for (k, v) in extra {
            if !v.is_null() {
                data.insert(k, v);
            }
        }
    }
    NewEvent::new(kind, entry.tenant.clone(), Some(integration_id), now, data)
}

#[cfg(test)]
mod tests;
