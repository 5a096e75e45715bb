//! Incidents: one event for a shared outage instead of one per integration.
//!
//! When a provider endpoint, the vault or the hub's own egress goes down, every integration
//! behind it fails at once. The [`Correlator`] watches the status events of the outbox per
//! (tenant, failure domain) and, when within `window_seconds` at least `min_members`
//! integrations of a domain, and at least `min_share` of the tenant's integrations in it, fail
//! with a reason that domain can cause ([`DomainKind::compatible`]), opens **one incident**
//! for that tenant and domain. Two tenants behind one failing host get one incident each: the
//! key is always (tenant, domain), and an incident's members are only that tenant's.
//!
//! # Precisely
//! - **Failing** in a domain: the integration's last status event says `degraded` or
//!   `unhealthy` with a compatible reason. Anything else (healthy, paused, another reason)
//!   ends it. Integrations in a maintenance window send no status events (noise control holds
//!   them), so they never count.
//! - **Open**: no incident of that (tenant, domain) is open, and the integrations whose
//!   failure started within the window number at least `min_members` and at least
//!   `min_share` of the domain's integrations **checked** since the first of those failures.
//!   Healthy checks send no events, so that number is estimated from the integrations' check
//!   intervals: the domain checks Σ 1/interval integrations a second, so a span of `s` seconds
//!   checked `rate × s + 1` of them, and never more than all. An outage that fails every check
//!   thus opens an incident as soon as `min_members` have failed, whatever the interval,
//!   while a few failures among many healthy checks open nothing. The window is
//!   `window_seconds`, or the domain's mean check interval when that is longer, so a small
//!   domain checked every few minutes still sees its integrations fail within one window.
//!   Every integration failing in the domain at that moment becomes a member; any that fails
//!   while it is open joins.
//! - **Updated**: when members join or recover, at most one `incident.updated` every
//!   `update_interval_seconds` (coalesced), and never in the second the incident opened.
//! - **Resolved**: once fewer than `min_members` members are still failing, and have been for
//!   `resolve_after_seconds` without interruption: one `incident.resolved`, listing the members
//!   still failing (`stillFailingIds`), whose own events go out one by one from then on.
//! - **Suppression**: while an incident is open, its members' status events are tagged with
//!   the incident (`events.incident_id`); channels that suppress incident members (webhook
//!   subscriptions by default, NATS by setting) skip them. SSE and the history show them as
//!   ever. A failure that may still become part of an incident is **held** for
//!   `hold_seconds` from when the correlator takes it in: the channels do not read past it until
//!   it is decided ([`Correlator::gate`]), so the first members of an incident are not sent one
//!   by one either. A single failing integration is held that long, then alerts as before;
//!   in a domain of fewer than `min_members` integrations, which can never open an incident,
//!   it is not held at all.
//! - **Time**: the window is measured between the failures' own times, and the hold from when
//!   the correlator reads each failure, so a correlator behind the outbox (a busy database, a
//!   backlog after a restart) still sees a storm as one: it never compares an old event's time
//!   with the present.
//! - **Egress**: the egress self-check reports the hub's own outage ([`Correlator::egress`]);
//!   every tenant with integrations gets one incident of domain `egress` (value `hub`) until it
//!   ends. Its members are all the tenant's integrations (the first `listed_members` stored and
//!   listed; `memberCount` exact).
//!
//! The correlator is pure: time comes in as arguments, effects go out as [`Effects`], so it is
//! tested without a clock or a database; `sinks::incidents` drives it from the outbox.

pub mod domain;

#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

pub use domain::{Domain, DomainKind};

use super::{EventKind, NewEvent, StoredEvent};

/// The `[incidents]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSettings {
    /// Correlate failures into incidents (and hold candidate events for `hold_seconds`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Failures that started within this long count toward opening an incident (or within
    /// the domain's mean check interval, when that is longer).
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// At least this many integrations of one domain must fail (2 at least: one failing
    /// integration always alerts on its own).
    #[serde(default = "default_min_members")]
    pub min_members: usize,
    /// And at least this share (0 to 1) of the tenant's integrations in the domain that were
    /// checked since the first of those failures (estimated from their check intervals).
    #[serde(default = "default_min_share")]
    pub min_share: f64,
    /// How long a failure that may become part of an incident is held back from webhooks
    /// and NATS while that is decided.
    #[serde(default = "default_hold")]
    pub hold_seconds: u64,
    /// At most one `incident.updated` per incident this often.
    #[serde(default = "default_update_interval")]
    pub update_interval_seconds: u64,
    /// Fewer than `min_members` members failing for this long resolves the incident.
    #[serde(default = "default_resolve_after")]
    pub resolve_after_seconds: u64,
    /// Members listed in an event's `integrationIds` (and stored for an egress incident);
    /// `memberCount` is always exact.
    #[serde(default = "default_listed")]
    pub listed_members: usize,
    /// The egress self-check.
    #[serde(default)]
    pub egress: EgressSettings,
}

/// The `[incidents.egress]` settings: the hub's own connectivity check.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// `host:port` addresses probed with a TCP connection; off when empty. Loopback and other
    /// private addresses are refused unless `[connectors.outbound] allow_private_networks`
    /// lists them.
    #[serde(default)]
    pub probes: Vec<String>,
    /// How often the probes run.
    #[serde(default = "default_egress_interval")]
    pub interval_seconds: u64,
    /// How long one probe may take.
    #[serde(default = "default_egress_timeout")]
    pub timeout_ms: u64,
}

const fn default_true() -> bool {
    true
}
const fn default_window() -> u64 {
    60
}
const fn default_min_members() -> usize {
    5
}
const fn default_min_share() -> f64 {
    0.5
}
const fn default_hold() -> u64 {
    10
}
const fn default_update_interval() -> u64 {
    60
}
const fn default_resolve_after() -> u64 {
    60
}
const fn default_listed() -> usize {
    1000
}
const fn default_egress_interval() -> u64 {
    10
}
const fn default_egress_timeout() -> u64 {
    2000
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            probes: Vec::new(),
            interval_seconds: default_egress_interval(),
            timeout_ms: default_egress_timeout(),
        }
    }
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window_seconds: default_window(),
            min_members: default_min_members(),
            min_share: default_min_share(),
            hold_seconds: default_hold(),
            update_interval_seconds: default_update_interval(),
            resolve_after_seconds: default_resolve_after(),
            listed_members: default_listed(),
            egress: EgressSettings::default(),
        }
    }
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incidents.{field}: {problem}")]
pub struct InvalidIncidentSettings {
    pub field: &'static str,
    pub problem: &'static str,
}

impl IncidentSettings {
    /// # Errors
    /// [`InvalidIncidentSettings`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidIncidentSettings> {
        let invalid = |field, problem| Err(InvalidIncidentSettings { field, problem });
        if self.min_members < 2 {
            return invalid("min_members", "at least 2");
        }
        if !(0.0..=1.0).contains(&self.min_share) {
            return invalid("min_share", "between 0 and 1");
        }
        if self.window_seconds == 0 {
            return invalid("window_seconds", "at least 1");
        }
        if self.listed_members == 0 {
            return invalid("listed_members", "at least 1");
        }
        if self.egress.interval_seconds == 0 {
            return invalid("egress.interval_seconds", "at least 1");
        }
        if self.egress.timeout_ms == 0 {
            return invalid("egress.timeout_ms", "at least 1");
        }
        Ok(())
    }
}

/// The egress self-check's verdict, shared by the prober, the health engine (which holds
/// failures during an outage) and the correlator. Cheap to clone; `false` (up) by default.
#[derive(Clone, Debug, Default)]
pub struct EgressFlag(Arc<std::sync::atomic::AtomicBool>);

impl EgressFlag {
    pub fn is_down(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a verdict; returns whether it changed.
    pub fn set_down(&self, down: bool) -> bool {
        self.0.swap(down, std::sync::atomic::Ordering::Relaxed) != down
    }
}

/// Whether a channel delivers the status events of an open incident's members one by one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentMembers {
    /// Only the incident's own events (the default).
    #[default]
    Suppress,
    /// Every member event as well.
    Deliver,
}

impl IncidentMembers {
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentMembers::Suppress => "suppress",
            IncidentMembers::Deliver => "deliver",
        }
    }

    /// An unknown stored value suppresses, the safe default.
    pub fn parse(s: &str) -> Self {
        if s == "deliver" {
            IncidentMembers::Deliver
        } else {
            IncidentMembers::Suppress
        }
    }

    /// Whether an event tagged with `incident` goes out on a channel with this setting.
    pub fn admits(self, incident: Option<Uuid>) -> bool {
        self == IncidentMembers::Deliver || incident.is_none()
    }
}

/// Where an incident stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentState {
    Open,
    Resolved,
}

impl IncidentState {
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Resolved]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// An incident as stored (inserted or replaced whole).
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRow {
    pub id: Uuid,
    pub tenant: Arc<str>,
    pub domain: Domain,
    pub reason: Arc<str>,
    pub state: IncidentState,
    pub title: String,
    pub member_count: i64,
    pub failing_count: i64,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A member as stored (inserted or replaced whole).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    pub incident_id: Uuid,
    pub tenant: Arc<str>,
    pub integration_id: Uuid,
    pub reason: Option<Arc<str>>,
    pub joined_at: DateTime<Utc>,
    pub recovered_at: Option<DateTime<Utc>>,
}

/// What the correlator decided: to be written in one transaction.
#[derive(Debug, Default)]
pub struct Effects {
    /// `incident.*` events to append to the outbox.
    pub events: Vec<NewEvent>,
    pub incidents: Vec<IncidentRow>,
    pub members: Vec<MemberRow>,
    /// Outbox events (by `seq`) that are part of an incident.
    pub tags: Vec<(i64, Uuid)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.incidents.is_empty()
            && self.members.is_empty()
            && self.tags.is_empty()
    }
}

/// A status event of the outbox, as the correlator reads it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub seq: i64,
    pub tenant: Arc<str>,
    pub integration_id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub time: DateTime<Utc>,
}

impl Observed {
    /// The status event in an outbox row: `health.changed`, `recovered`, `reminder` and
    /// `flapping` tell an integration's status; other events are not about it.
    pub fn from_event(e: &StoredEvent) -> Option<Self> {
        let kind = EventKind::parse(&e.event_type)?;
        if !matches!(
            kind,
            EventKind::HealthChanged
                | EventKind::HealthRecovered
                | EventKind::HealthReminder
                | EventKind::HealthFlapping
        ) {
            return None;
        }
        let data = e.payload.get("data")?;
        Some(Self {
            seq: e.seq,
            tenant: Arc::from(e.tenant_id.as_str()),
            integration_id: e.integration_id?,
            status: data.get("status")?.as_str()?.to_owned(),
            reason: data
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            time: e.time,
        })
    }

    fn failing(&self) -> bool {
        matches!(self.status.as_str(), "degraded" | "unhealthy")
    }
}

type DomainKey = (Arc<str>, Domain);

struct Known {
    tenant: Arc<str>,
    domains: Vec<Domain>,
    /// Seconds between two checks (at least 1).
    interval: u32,
}

struct Failing {
    since: DateTime<Utc>,
    reason: Arc<str>,
}

#[derive(Default)]
struct DomainState {
    /// Monitored integrations of the tenant in the domain.
    population: usize,
    /// Checks a second of those integrations: Σ 1/interval.
    check_rate: f64,
    failing: HashMap<Uuid, Failing>,
    open: Option<Open>,
}

struct Member {
    reason: Option<Arc<str>>,
    joined_at: DateTime<Utc>,
    recovered_at: Option<DateTime<Utc>>,
}

struct Open {
    id: Uuid,
    reason: Arc<str>,
    opened_at: DateTime<Utc>,
    last_update: DateTime<Utc>,
    /// Members joined or recovered since the last event.
    dirty: bool,
    /// Members joined or recovered since the row was last written.
    row_dirty: bool,
    /// Since when fewer than `min_members` members fail.
    quiet_since: Option<DateTime<Utc>>,
    /// Members not recovered that still fail in the domain, kept as they change (so a tick
    /// does not walk the members).
    failing: usize,
    members: HashMap<Uuid, Member>,
    /// For an egress incident: every integration of the tenant, though only the first
    /// `listed_members` are in `members`.
    member_count: usize,
}

/// A failure held back from the channels until it is decided.
struct Held {
    seq: i64,
    tenant: Arc<str>,
    integration_id: Uuid,
    decide_at: DateTime<Utc>,
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::from_std(Duration::from_secs(s)).unwrap_or(chrono::Duration::MAX)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Open incidents by domain kind, and their members (for the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenCounts {
    pub incidents: [usize; 3],
    pub members: [usize; 3],
}

/// The correlation state: which integrations sit in which domains, which fail, which
/// incidents are open, which failures are held.
pub struct Correlator {
    settings: IncidentSettings,
    known: HashMap<Uuid, Known>,
    domains: HashMap<DomainKey, DomainState>,
    held: VecDeque<Held>,
    /// Open egress incidents, by tenant.
    egress: HashMap<Arc<str>, Open>,
}

impl Correlator {
    pub fn new(settings: IncidentSettings) -> Self {
        Self {
            settings,
            known: HashMap::new(),
            domains: HashMap::new(),
            held: VecDeque::new(),
            egress: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &IncidentSettings {
        &self.settings
    }

    /// Integrations known.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Records (or moves) a monitored integration, its domains and how often it is checked.
    /// Paused integrations are [`Correlator::remove`]d instead: they cannot fail.
    pub fn upsert(&mut self, id: Uuid, tenant: Arc<str>, domains: Vec<Domain>, every: Duration) {
        let interval = u32::try_from(every.as_secs()).unwrap_or(u32::MAX).max(1);
        if let Some(old) = self.known.get(&id)
            && old.tenant == tenant
            && old.domains == domains
            && old.interval == interval
        {
            return;
        }
        self.remove(id);
        // Every integration of a (tenant, domain) shares the map key's strings: one copy of
        // a tenant's name and of an endpoint, however many integrations sit behind it.
        let mut tenant = tenant;
        let mut interned = Vec::with_capacity(domains.len());
        for domain in domains {
            let (key, state) = match self.domains.entry((tenant.clone(), domain)) {
                Entry::Occupied(e) => (e.key().clone(), e.into_mut()),
                Entry::Vacant(e) => (e.key().clone(), e.insert(DomainState::default())),
            };
            state.population += 1;
            state.check_rate += 1.0 / f64::from(interval);
            tenant = key.0;
            interned.push(key.1);
        }
        self.known.insert(
            id,
            Known {
                tenant,
                domains: interned,
                interval,
            },
        );
    }

    /// Forgets a deleted or paused integration (it stays a member of incidents it was in).
    pub fn remove(&mut self, id: Uuid) {
        let Some(old) = self.known.remove(&id) else {
            return;
        };
        for domain in old.domains {
            let key = (old.tenant.clone(), domain);
            if let Some(state) = self.domains.get_mut(&key) {
                state.population = state.population.saturating_sub(1);
                state.check_rate = if state.population == 0 {
                    0.0
                } else {
                    (state.check_rate - 1.0 / f64::from(old.interval)).max(0.0)
                };
                let counted = state.counted(id);
                state.failing.remove(&id);
                if counted && let Some(open) = &mut state.open {
                    open.failing -= 1;
                }
                if state.population == 0 && state.open.is_none() {
                    self.domains.remove(&key);
                }
            }
        }
    }

    /// Takes one status event of the outbox in, in outbox order.
    pub fn observe(&mut self, o: &Observed, now: DateTime<Utc>, fx: &mut Effects) {
        let Some(known) = self.known.get(&o.integration_id) else {
            return;
        };
        if known.tenant != o.tenant {
            return;
        }
        let tenant = known.tenant.clone();
        let domains = known.domains.clone();
        let mut tag = None;
        let mut candidate = false;
        for domain in domains {
            let key = (tenant.clone(), domain);
            let compatible = o.failing()
                && o.reason
                    .as_deref()
                    .is_some_and(|r| key.1.kind.compatible(r));
            let Some(state) = self.domains.get_mut(&key) else {
                continue;
            };
            let before = state.counted(o.integration_id);
            let open_before = state.open.as_ref().map(|open| open.id);
            'step: {
                if !compatible {
                    state.failing.remove(&o.integration_id);
                    if let Some(open) = &mut state.open
                        && let Some(member) = open.members.get_mut(&o.integration_id)
                    {
                        if o.status == "healthy" && member.recovered_at.is_none() {
                            member.recovered_at = Some(o.time);
                            open.dirty = true;
                            open.row_dirty = true;
                            fx.members
                                .push(member_row(open.id, &tenant, o.integration_id, member));
                        }
                        tag = tag.or(Some(open.id));
                    }
                    break 'step;
                }
                let reason: Arc<str> = Arc::from(o.reason.as_deref().unwrap_or_default());
                let mut started = false;
                state.failing.entry(o.integration_id).or_insert_with(|| {
                    started = true;
                    Failing {
                        since: o.time,
                        reason: reason.clone(),
                    }
                });
                if let Some(open) = &mut state.open {
                    let joined = !open.members.contains_key(&o.integration_id);
                    let member = open
                        .members
                        .entry(o.integration_id)
                        .or_insert_with(|| Member {
                            reason: Some(reason.clone()),
                            joined_at: o.time,
                            recovered_at: None,
                        });
                    if joined {
                        crate::events::metrics::incident_members(key.1.kind, 1);
                    }
                    if member.recovered_at.take().is_some() || joined {
                        open.dirty = true;
                        open.row_dirty = true;
                        fx.members
                            .push(member_row(open.id, &tenant, o.integration_id, member));
                    }
                    open.member_count = open.members.len();
                    tag = tag.or(Some(open.id));
                    break 'step;
                }
                if !started {
                    // Still failing (degraded to unhealthy, a reminder): no new failure in the
                    // window, so nothing to decide, but held like its first failure, so that an
                    // incident opening in the meantime takes it too.
                    candidate |= state.population >= self.settings.min_members;
                    break 'step;
                }
                // Failures that started within the window before this one, by the events' own
                // times: how far behind the outbox the correlator reads does not matter.
                let window_start = o.time.min(now) - state.window(self.settings.window_seconds);
                let (recent, first) = state
                    .failing
                    .values()
                    .filter(|f| f.since > window_start)
                    .fold((0, o.time), |(n, first), f| (n + 1, first.min(f.since)));
                let share_met =
                    recent as f64 >= self.settings.min_share * state.checked_between(first, o.time);
                if recent >= self.settings.min_members && share_met {
                    let open = open_incident(&self.settings, &tenant, &key.1, state, now, fx);
                    let id = open.id;
                    // The members' failures still held go with the incident.
                    self.held.retain(|h| {
                        let member =
                            h.tenant == tenant && open.members.contains_key(&h.integration_id);
                        if member {
                            fx.tags.push((h.seq, id));
                        }
                        !member
                    });
                    state.open = Some(open);
                    tag = tag.or(Some(id));
                } else {
                    // A domain too small to reach the count never opens: nothing to wait for.
                    candidate |= state.population >= self.settings.min_members;
                }
            }
            // The open incident's count of failing members follows this integration.
            let after = state.counted(o.integration_id);
            if let Some(open) = &mut state.open
                && Some(open.id) == open_before
            {
                open.failing = (open.failing + usize::from(after)) - usize::from(before);
            }
        }
        if let Some(id) = tag {
            fx.tags.push((o.seq, id));
        } else if candidate && self.settings.hold_seconds > 0 {
            self.held.push_back(Held {
                seq: o.seq,
                tenant,
                integration_id: o.integration_id,
                decide_at: now + secs(self.settings.hold_seconds),
            });
        }
    }

    /// What time alone decides: coalesced updates, resolutions, held failures let go.
    pub fn tick(&mut self, now: DateTime<Utc>, fx: &mut Effects) {
        let min = self.settings.min_members;
        let resolve_after = secs(self.settings.resolve_after_seconds);
        let update_every = secs(self.settings.update_interval_seconds);
        let listed = self.settings.listed_members;
        for ((tenant, domain), state) in &mut self.domains {
            let Some(open) = &mut state.open else {
                continue;
            };
            let failing = open.failing;
            debug_assert_eq!(
                failing,
                open.members
                    .iter()
                    .filter(|(id, m)| m.recovered_at.is_none() && state.failing.contains_key(id))
                    .count(),
                "the failing members, kept as they change, are those counted"
            );
            if failing >= min {
                open.quiet_since = None;
            } else {
                let quiet = *open.quiet_since.get_or_insert(now);
                if now - quiet >= resolve_after {
                    let open = state.open.take().expect("checked above");
                    let still: BTreeSet<Uuid> = open
                        .members
                        .keys()
                        .filter(|id| state.failing.contains_key(id))
                        .copied()
                        .collect();
                    resolve(tenant, domain, &open, &still, failing, listed, now, fx);
                    continue;
                }
            }
            if open.dirty && now - open.last_update >= update_every && now > open.opened_at {
                open.dirty = false;
                open.row_dirty = false;
                open.last_update = now;
                let row = incident_row(tenant, domain, open, failing, IncidentState::Open, now);
                fx.events.push(incident_event(
                    EventKind::IncidentUpdated,
                    &row,
                    &open.members,
                    listed,
                    None,
                ));
                fx.incidents.push(row);
            } else if open.row_dirty {
                // The stored row follows the members at once; the event is coalesced.
                open.row_dirty = false;
                let row = incident_row(tenant, domain, open, failing, IncidentState::Open, now);
                fx.incidents.push(row);
            }
        }
        self.domains
            .retain(|_, s| s.population > 0 || s.open.is_some() || !s.failing.is_empty());
        while self.held.front().is_some_and(|h| h.decide_at <= now) {
            self.held.pop_front();
        }
        // Held entries are in outbox order; one decided early (it joined an incident) may sit
        // behind an undecided one, which is fine: the gate looks at the oldest.
    }

    /// The highest outbox `seq` the channels may read: everything up to `cursor` (what the
    /// correlator has taken in) except from the oldest failure still held on.
    pub fn gate(&mut self, now: DateTime<Utc>, cursor: i64) -> i64 {
        while self.held.front().is_some_and(|h| h.decide_at <= now) {
            self.held.pop_front();
        }
        match self.held.front() {
            Some(h) => (h.seq - 1).min(cursor),
            None => cursor,
        }
    }

    /// When the oldest held failure is let go, if any: the driver's next wake-up.
    pub fn next_decision(&self) -> Option<DateTime<Utc>> {
        self.held.front().map(|h| h.decide_at)
    }

    /// The egress self-check's verdict: `down` opens one `egress` incident per tenant with
    /// integrations (once), `!down` resolves them.
    pub fn egress(&mut self, down: bool, now: DateTime<Utc>, fx: &mut Effects) {
        let listed = self.settings.listed_members;
        let domain = Domain::egress();
        if !down {
            for (tenant, open) in self.egress.drain() {
                let none = BTreeSet::new();
                resolve(&tenant, &domain, &open, &none, 0, listed, now, fx);
            }
            return;
        }
        let mut by_tenant: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
        for (id, known) in &self.known {
            if !self.egress.contains_key(&known.tenant) {
                by_tenant.entry(known.tenant.clone()).or_default().push(*id);
            }
        }
        for (tenant, mut ids) in by_tenant {
            ids.sort_unstable();
            let member_count = ids.len();
            let members: HashMap<Uuid, Member> = ids
                .into_iter()
                .take(listed)
                .map(|id| {
                    let member = Member {
                        reason: None,
                        joined_at: now,
                        recovered_at: None,
                    };
                    (id, member)
                })
                .collect();
            let open = Open {
                id: Uuid::now_v7(),
                reason: Arc::from("network"),
                opened_at: now,
                last_update: now,
                dirty: false,
                row_dirty: false,
                quiet_since: None,
                failing: 0,
                members,
                member_count,
            };
            announce_open(&tenant, &domain, &open, 0, listed, now, fx);
            crate::events::metrics::incident_opened(DomainKind::Egress, member_count);
            self.egress.insert(tenant, open);
        }
    }

    /// Open incidents and their members, by domain kind.
    pub fn open_counts(&self) -> OpenCounts {
        let mut counts = OpenCounts::default();
        let index = |k: DomainKind| k as usize;
        for ((_, domain), state) in &self.domains {
            if let Some(open) = &state.open {
                counts.incidents[index(domain.kind)] += 1;
                counts.members[index(domain.kind)] += open.member_count;
            }
        }
        for open in self.egress.values() {
            counts.incidents[index(DomainKind::Egress)] += 1;
            counts.members[index(DomainKind::Egress)] += open.member_count;
        }
        counts
    }

    /// Takes an incident left open by a previous run back, so it is updated and resolved
    /// rather than opened again; its members that are failing are learnt from the events
    /// that follow (or stay failing: the quiet period then resolves it).
    pub fn adopt(&mut self, row: &IncidentRow, members: Vec<MemberRow>) {
        let member_count = usize::try_from(row.member_count).unwrap_or_default();
        let open = Open {
            id: row.id,
            reason: row.reason.clone(),
            opened_at: row.opened_at,
            last_update: row.updated_at,
            dirty: false,
            row_dirty: false,
            quiet_since: None,
            failing: 0,
            members: members
                .into_iter()
                .map(|m| {
                    let member = Member {
                        reason: m.reason,
                        joined_at: m.joined_at,
                        recovered_at: m.recovered_at,
                    };
                    (m.integration_id, member)
                })
                .collect(),
            member_count,
        };
        crate::events::metrics::incident_adopted(row.domain.kind, member_count);
        if row.domain.kind == DomainKind::Egress {
            self.egress.insert(row.tenant.clone(), open);
            return;
        }
        let state = self
            .domains
            .entry((row.tenant.clone(), row.domain.clone()))
            .or_default();
        let mut open = open;
        for (id, m) in &open.members {
            if m.recovered_at.is_none() {
                let reason = m.reason.clone().unwrap_or_else(|| row.reason.clone());
                state.failing.entry(*id).or_insert(Failing {
                    since: m.joined_at,
                    reason,
                });
                open.failing += 1;
            }
        }
        state.open = Some(open);
    }
}

impl DomainState {
    /// Whether `id` counts among the open incident's failing members.
    fn counted(&self, id: Uuid) -> bool {
        self.open.as_ref().is_some_and(|open| {
            open.members
                .get(&id)
                .is_some_and(|m| m.recovered_at.is_none())
        }) && self.failing.contains_key(&id)
    }

    /// The correlation window: `window_seconds`, or the mean check interval when longer.
    fn window(&self, window_seconds: u64) -> chrono::Duration {
        let round = if self.check_rate > 0.0 {
            (self.population as f64 / self.check_rate).ceil() as u64
        } else {
            0
        };
        secs(window_seconds.max(round))
    }

    /// How many of the domain's integrations were checked from `first` to `last`, by their
    /// check intervals: the first check itself, plus the rate over the span, at most all.
    fn checked_between(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> f64 {
        let span = (last - first).num_milliseconds().max(0) as f64 / 1000.0;
        (1.0 + self.check_rate * span).min(self.population as f64)
    }
}

fn member_row(incident_id: Uuid, tenant: &Arc<str>, id: Uuid, m: &Member) -> MemberRow {
    MemberRow {
        incident_id,
        tenant: tenant.clone(),
        integration_id: id,
        reason: m.reason.clone(),
        joined_at: m.joined_at,
        recovered_at: m.recovered_at,
    }
}

fn open_incident(
    settings: &IncidentSettings,
    tenant: &Arc<str>,
    domain: &Domain,
    state: &DomainState,
    now: DateTime<Utc>,
    fx: &mut Effects,
) -> Open {
    // The reason most members share (ties: the alphabetically first, so it is stable).
    let mut reasons: HashMap<&str, usize> = HashMap::new();
    for f in state.failing.values() {
        *reasons.entry(&f.reason).or_default() += 1;
    }
    let reason = reasons
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map_or_else(|| Arc::from("network"), |(r, _)| Arc::from(r));
    let members: HashMap<Uuid, Member> = state
        .failing
        .iter()
        .map(|(id, f)| {
            let member = Member {
                reason: Some(f.reason.clone()),
                joined_at: f.since,
                recovered_at: None,
            };
            (*id, member)
        })
        .collect();
    let open = Open {
        id: Uuid::now_v7(),
        reason,
        opened_at: now,
        last_update: now,
        dirty: false,
        row_dirty: false,
        quiet_since: None,
        failing: members.len(),
        member_count: members.len(),
        members,
    };
    for (id, m) in &open.members {
        fx.members.push(member_row(open.id, tenant, *id, m));
    }
    let failing = open.member_count;
    announce_open(
        tenant,
        domain,
        &open,
        failing,
        settings.listed_members,
        now,
        fx,
    );
    crate::events::metrics::incident_opened(domain.kind, open.member_count);
    open
}

fn announce_open(
    tenant: &Arc<str>,
    domain: &Domain,
    open: &Open,
    failing: usize,
    listed: usize,
    now: DateTime<Utc>,
    fx: &mut Effects,
) {
    if domain.kind == DomainKind::Egress {
        for (id, m) in &open.members {
            fx.members.push(member_row(open.id, tenant, *id, m));
        }
    }
    let row = incident_row(tenant, domain, open, failing, IncidentState::Open, now);
    fx.events.push(incident_event(
        EventKind::IncidentOpened,
        &row,
        &open.members,
        listed,
        None,
    ));
    fx.incidents.push(row);
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    tenant: &Arc<str>,
    domain: &Domain,
    open: &Open,
    still_failing: &BTreeSet<Uuid>,
    failing: usize,
    listed: usize,
    now: DateTime<Utc>,
    fx: &mut Effects,
) {
    let mut row = incident_row(tenant, domain, open, failing, IncidentState::Resolved, now);
    row.resolved_at = Some(now);
    fx.events.push(incident_event(
        EventKind::IncidentResolved,
        &row,
        &open.members,
        listed,
        Some(still_failing),
    ));
    fx.incidents.push(row);
    crate::events::metrics::incident_resolved(domain.kind, open.member_count);
}

fn title(domain: &Domain, reason: &str, members: usize) -> String {
    match domain.kind {
        DomainKind::Egress => {
            "The hub cannot reach the network: health results are held, not alerted".to_owned()
        }
        DomainKind::Vault => format!(
            "{members} integrations cannot read their credentials from the vault at {} ({reason})",
            domain.value
        ),
        DomainKind::Provider => format!(
            "{members} integrations failing at {} ({reason})",
            domain.value
        ),
    }
}

fn incident_row(
    tenant: &Arc<str>,
    domain: &Domain,
    open: &Open,
    failing: usize,
    state: IncidentState,
    now: DateTime<Utc>,
) -> IncidentRow {
    IncidentRow {
        id: open.id,
        tenant: tenant.clone(),
        domain: domain.clone(),
        reason: open.reason.clone(),
        state,
        title: title(domain, &open.reason, open.member_count),
        member_count: open.member_count as i64,
        failing_count: failing as i64,
        opened_at: open.opened_at,
        updated_at: now,
        resolved_at: None,
    }
}

/// An `incident.*` event: the incident's whole state, members listed (sorted, at most
/// `listed`).
fn incident_event(
    kind: EventKind,
    row: &IncidentRow,
    members: &HashMap<Uuid, Member>,
    listed: usize,
    still_failing: Option<&BTreeSet<Uuid>>,
) -> NewEvent {
    let mut ids: Vec<Uuid> = members.keys().copied().collect();
    ids.sort_unstable();
    let truncated = row.member_count as usize > listed || ids.len() > listed;
    let ids: Vec<String> = ids
        .into_iter()
        .take(listed)
        .map(|id| id.to_string())
        .collect();
    let mut data = json!({
        "incidentId": row.id.to_string(),
        "tenant": &*row.tenant,
        "domain": {"kind": row.domain.kind.as_str(), "value": &*row.domain.value},
        "reason": &*row.reason,
        "state": row.state.as_str(),
        "title": row.title,
        "memberCount": row.member_count,
        "failingCount": row.failing_count,
        "integrationIds": ids,
        "membersTruncated": truncated,
        "openedAt": stamp(row.opened_at),
        "resolvedAt": row.resolved_at.map(stamp),
    });
    if let Some(still) = still_failing {
        data["stillFailingIds"] = json!(
            still
                .iter()
                .take(listed)
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
        );
    }
    NewEvent::new(kind, row.tenant.clone(), None, row.updated_at, data)
}
