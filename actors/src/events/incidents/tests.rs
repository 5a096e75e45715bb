//! The correlator on a paused clock: thresholds, window, coalesced updates, resolution,
//! tenants kept apart, holding and letting go, maintenance, the vault, the egress.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::events::alerts::{AlertSettings, Alerts, MaintenanceChange, Transition};
use crate::events::clock::Clock;
use crate::events::maintenance::Window;
use crate::status::Status;

const HOST: &str = "https://git.example.com:443";
const VAULT: &str = "https://vault.example.com:8200";
/// How often the harness's integrations are checked.
const EVERY: Duration = Duration::from_secs(60);

fn provider() -> Domain {
    Domain::new(DomainKind::Provider, HOST)
}

fn vault() -> Domain {
    Domain::new(DomainKind::Vault, VAULT)
}

fn settings() -> IncidentSettings {
    IncidentSettings {
        window_seconds: 60,
        min_members: 5,
        min_share: 0.5,
        hold_seconds: 10,
        update_interval_seconds: 60,
        resolve_after_seconds: 30,
        ..IncidentSettings::default()
    }
}

/// A correlator, a paused clock and an outbox sequence.
struct Harness {
    c: Correlator,
    clock: Clock,
    seq: i64,
    fx: Effects,
}

impl Harness {
    fn new(settings: IncidentSettings) -> Self {
        Self {
            c: Correlator::new(settings),
            clock: Clock::tokio(
                DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
                    .unwrap()
                    .to_utc(),
            ),
            seq: 0,
            fx: Effects::default(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// `n` integrations of `tenant` in `domains`, checked every minute.
    fn fleet(&mut self, tenant: &str, n: usize, domains: &[Domain]) -> Vec<Uuid> {
        self.fleet_checked(tenant, n, domains, EVERY)
    }

    /// `n` integrations of `tenant` in `domains`, checked `every` so often.
    fn fleet_checked(
        &mut self,
        tenant: &str,
        n: usize,
        domains: &[Domain],
        every: Duration,
    ) -> Vec<Uuid> {
        (0..n)
            .map(|_| {
                let id = Uuid::now_v7();
                self.c
                    .upsert(id, Arc::from(tenant), domains.to_vec(), every);
                id
            })
            .collect()
    }

    /// A status event of `id` now; returns its `seq`.
    fn status(&mut self, tenant: &str, id: Uuid, status: &str, reason: Option<&str>) -> i64 {
        let now = self.now();
        self.status_at(tenant, id, status, reason, now)
    }

    /// A status event of `id` that happened at `time`, read now.
    fn status_at(
        &mut self,
        tenant: &str,
        id: Uuid,
        status: &str,
        reason: Option<&str>,
        time: DateTime<Utc>,
    ) -> i64 {
        self.seq += 1;
        let o = Observed {
            seq: self.seq,
            tenant: Arc::from(tenant),
            integration_id: id,
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
            time,
        };
        let now = self.now();
        self.c.observe(&o, now, &mut self.fx);
        self.seq
    }

    fn fail(&mut self, tenant: &str, id: Uuid) -> i64 {
        self.status(tenant, id, "degraded", Some("network"))
    }

    fn tick(&mut self) {
        let now = self.now();
        self.c.tick(now, &mut self.fx);
    }

    async fn advance(&mut self, secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
        self.tick();
    }

    /// The incident events so far, as (type, data).
    fn incident_events(&self) -> Vec<(EventKind, Value)> {
        self.fx
            .events
            .iter()
            .map(|e| (e.kind, e.data.clone()))
            .collect()
    }

    fn of(&self, kind: EventKind) -> Vec<Value> {
        self.incident_events()
            .into_iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| d)
            .collect()
    }
}

fn ids(data: &Value, field: &str) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = data[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn a_correlator_reading_a_backlog_sees_a_storm_long_past_as_one_incident() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 8, &[provider()]);
    // The failures happened a second apart ten minutes ago; the correlator reads them now,
    // one by one, as it catches up with the outbox.
    let then = h.now() - chrono::Duration::minutes(10);
    let mut seqs = Vec::new();
    for (i, id) in fleet.iter().enumerate() {
        let at = then + chrono::Duration::seconds(i as i64);
        seqs.push(h.status_at("acme", *id, "degraded", Some("network"), at));
        h.advance(1).await;
    }
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 1, "one incident, not eight alerts");
    assert_eq!(opened[0]["memberCount"], 5);
    // Every failure belongs to it: the first four were held from when they were read, not
    // from their (old) times, so none went out on its own.
    let mut tagged: Vec<i64> = h.fx.tags.iter().map(|(s, _)| *s).collect();
    tagged.sort();
    assert_eq!(tagged, seqs);
    let now = h.now();
    assert_eq!(h.c.gate(now, h.seq), h.seq);
}

#[tokio::test(start_paused = true)]
async fn the_count_threshold_opens_one_incident_and_takes_the_held_failures_with_it() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 8, &[provider()]);
    let mut seqs = Vec::new();
    for id in &fleet[..4] {
        seqs.push(h.fail("acme", *id));
        h.advance(1).await;
    }
    assert!(h.fx.events.is_empty(), "four of eight is under the count");
    // The first gets worse meanwhile: held like its first failure.
    seqs.push(h.status("acme", fleet[0], "unhealthy", Some("network")));
    // Held: the channels stop before the first failure.
    let now = h.now();
    assert_eq!(h.c.gate(now, h.seq), seqs[0] - 1);
    seqs.push(h.fail("acme", fleet[4]));
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["memberCount"], 5);
    assert_eq!(
        ids(&opened[0], "integrationIds"),
        sorted(fleet[..5].to_vec())
    );
    assert_eq!(opened[0]["domain"]["kind"], "provider");
    assert_eq!(opened[0]["domain"]["value"], HOST);
    assert_eq!(opened[0]["reason"], "network");
    assert_eq!(opened[0]["tenant"], "acme");
    assert!(opened[0]["resolvedAt"].is_null());
    let incident: Uuid = opened[0]["incidentId"].as_str().unwrap().parse().unwrap();
    // Every member's failure is part of it, the held ones included; nothing is held now.
    let mut tagged: Vec<i64> = h.fx.tags.iter().map(|(s, _)| *s).collect();
    tagged.sort();
    assert_eq!(tagged, seqs);
    assert!(h.fx.tags.iter().all(|(_, i)| *i == incident));
    let now = h.now();
    assert_eq!(h.c.gate(now, h.seq), h.seq);
    // A sixth member joins and is tagged; the rows record all six.
    let sixth = h.fail("acme", fleet[5]);
    assert!(h.fx.tags.contains(&(sixth, incident)));
    let members: std::collections::HashSet<Uuid> =
        h.fx.members.iter().map(|m| m.integration_id).collect();
    assert_eq!(members.len(), 6);
    assert!(h.fx.members.iter().all(|m| m.tenant.as_ref() == "acme"));
    // The stored row follows at the next tick; the event waits for the update interval.
    h.tick();
    assert_eq!(h.fx.incidents.last().unwrap().member_count, 6);
    assert!(h.of(EventKind::IncidentUpdated).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_few_failures_among_many_healthy_checks_open_nothing_until_half_fail() {
    let mut h = Harness::new(settings());
    // Forty integrations checked every 10 s: four checks a second.
    let fleet = h.fleet_checked("acme", 40, &[provider()], Duration::from_secs(10));
    // One check in four fails, for ten seconds: ten failures, over the count of five, but
    // of about 37 integrations checked.
    for id in &fleet[..10] {
        h.fail("acme", *id);
        h.advance(1).await;
    }
    assert!(h.fx.events.is_empty(), "10 of ~37 checked is under half");
    // Then every check fails, four a second. By now all forty were checked since the first
    // failure (1 + 4 × 10 > 40), so the incident opens once twenty of them fail.
    let mut opened_at = None;
    for (n, id) in fleet[10..].iter().enumerate() {
        h.fail("acme", *id);
        if opened_at.is_none() && !h.of(EventKind::IncidentOpened).is_empty() {
            opened_at = Some(10 + n + 1);
        }
        tokio::time::advance(Duration::from_millis(250)).await;
    }
    assert_eq!(opened_at, Some(20), "opened at the twentieth failure");
    assert_eq!(h.of(EventKind::IncidentOpened).len(), 1);
    assert_eq!(h.of(EventKind::IncidentOpened)[0]["memberCount"], 20);
}

#[tokio::test(start_paused = true)]
async fn an_outage_opens_as_soon_as_the_count_fails_whatever_the_check_interval() {
    let mut h = Harness::new(settings());
    // A thousand integrations on the five-minute default: 3.3 checks a second. Every check
    // fails: the fifth failure, 1.2 s in, opens the incident though 995 were not checked yet.
    let fleet = h.fleet_checked("acme", 1000, &[provider()], Duration::from_secs(300));
    let mut seqs = Vec::new();
    for id in &fleet[..5] {
        seqs.push(h.fail("acme", *id));
        tokio::time::advance(Duration::from_millis(300)).await;
    }
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["memberCount"], 5);
    // None of the five went out on its own: all are the incident's.
    let mut tagged: Vec<i64> = h.fx.tags.iter().map(|(s, _)| *s).collect();
    tagged.sort();
    assert_eq!(tagged, seqs);
}

#[tokio::test(start_paused = true)]
async fn a_small_domain_checked_every_five_minutes_sees_its_outage_within_one_round() {
    let mut h = Harness::new(settings());
    // Eight integrations checked every 300 s fail one every 37.5 s as their checks come:
    // never five within the 60 s window, but the window of a domain is at least its check
    // interval.
    let fleet = h.fleet_checked("acme", 8, &[provider()], Duration::from_secs(300));
    for id in &fleet[..4] {
        h.fail("acme", *id);
        tokio::time::advance(Duration::from_millis(37_500)).await;
        h.tick();
    }
    assert!(h.fx.events.is_empty());
    h.fail("acme", fleet[4]);
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 1, "the fifth failure, 150 s after the first");
    assert_eq!(opened[0]["memberCount"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_domain_smaller_than_the_count_holds_nothing() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 4, &[provider()]);
    let seq = h.fail("acme", fleet[0]);
    let now = h.now();
    assert_eq!(h.c.gate(now, seq), seq, "four can never make five");
    assert_eq!(h.c.next_decision(), None);
}

#[tokio::test(start_paused = true)]
async fn failures_spread_wider_than_the_window_open_nothing() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 6, &[provider()]);
    for id in &fleet[..5] {
        h.fail("acme", *id);
        h.advance(20).await;
    }
    assert!(h.fx.events.is_empty(), "at most three started within 60 s");
    // Each failure was held for 10 s, then let go: the channels pass everything.
    let now = h.now();
    assert_eq!(h.c.gate(now, h.seq), h.seq);
    assert!(h.fx.tags.is_empty());
}

#[tokio::test(start_paused = true)]
async fn updates_are_coalesced_to_one_a_minute() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 40, &[provider()]);
    for id in &fleet[..20] {
        h.fail("acme", *id);
    }
    // Opened at the fifth failure, every check failing; fifteen joined at once.
    assert_eq!(h.of(EventKind::IncidentOpened).len(), 1);
    assert_eq!(h.of(EventKind::IncidentOpened)[0]["memberCount"], 5);
    // Twenty more join, one every 5 s over 100 s.
    for id in &fleet[20..] {
        h.advance(5).await;
        h.fail("acme", *id);
    }
    h.advance(60).await;
    let updates = h.of(EventKind::IncidentUpdated);
    assert_eq!(updates.len(), 2, "one at 60 s, one at 120 s: {updates:?}");
    assert_eq!(updates.last().unwrap()["memberCount"], 40);
    // Nothing changed since: no more updates.
    h.advance(300).await;
    assert_eq!(h.of(EventKind::IncidentUpdated).len(), 2);
    assert!(h.of(EventKind::IncidentResolved).is_empty());
}

#[tokio::test(start_paused = true)]
async fn recovery_resolves_once_after_the_quiet_period_and_names_who_still_fails() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 10, &[provider()]);
    for id in &fleet {
        h.fail("acme", *id);
    }
    assert_eq!(h.of(EventKind::IncidentOpened).len(), 1);
    h.advance(5).await;
    // Seven recover: three still fail, under the count of five.
    let mut recovered_seqs = Vec::new();
    for id in &fleet[..7] {
        recovered_seqs.push(h.status("acme", *id, "healthy", None));
    }
    // The driver ticks after every batch of events.
    h.tick();
    let incident = h.fx.tags[0].1;
    for s in &recovered_seqs {
        assert!(
            h.fx.tags.contains(&(*s, incident)),
            "members' recoveries are part of it"
        );
    }
    h.advance(29).await;
    assert!(
        h.of(EventKind::IncidentResolved).is_empty(),
        "quiet for 29 s only"
    );
    h.advance(1).await;
    let resolved = h.of(EventKind::IncidentResolved);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["memberCount"], 10);
    assert_eq!(resolved[0]["failingCount"], 3);
    assert_eq!(resolved[0]["state"], "resolved");
    assert!(resolved[0]["resolvedAt"].is_string());
    assert_eq!(ids(&resolved[0], "integrationIds"), sorted(fleet.clone()));
    assert_eq!(
        ids(&resolved[0], "stillFailingIds"),
        sorted(fleet[7..].to_vec())
    );
    h.advance(600).await;
    assert_eq!(h.of(EventKind::IncidentResolved).len(), 1);
    // After it, a member's event is its own again.
    let after = h.status("acme", fleet[8], "healthy", None);
    assert!(!h.fx.tags.iter().any(|(s, _)| *s == after));
}

#[tokio::test(start_paused = true)]
async fn a_relapse_during_the_quiet_period_keeps_the_incident_open() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 10, &[provider()]);
    for id in &fleet {
        h.fail("acme", *id);
    }
    for id in &fleet {
        h.status("acme", *id, "healthy", None);
    }
    h.advance(20).await;
    for id in &fleet[..6] {
        h.fail("acme", *id);
    }
    h.advance(20).await;
    assert!(h.of(EventKind::IncidentResolved).is_empty());
    assert_eq!(h.of(EventKind::IncidentOpened).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_tenants_behind_one_host_get_one_incident_each_never_mixed() {
    let mut h = Harness::new(settings());
    let acme = h.fleet("acme", 6, &[provider()]);
    let globex = h.fleet("globex", 6, &[provider()]);
    for (a, g) in acme.iter().zip(&globex) {
        h.fail("acme", *a);
        h.fail("globex", *g);
    }
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 2);
    for data in &opened {
        let tenant = data["tenant"].as_str().unwrap();
        let expected = if tenant == "acme" { &acme } else { &globex };
        // Opened at the fifth failure of the tenant; the sixth joined after.
        assert_eq!(ids(data, "integrationIds"), sorted(expected[..5].to_vec()));
    }
    for (tenant, fleet) in [("acme", &acme), ("globex", &globex)] {
        let members: std::collections::HashSet<Uuid> =
            h.fx.members
                .iter()
                .filter(|m| m.tenant.as_ref() == tenant)
                .map(|m| m.integration_id)
                .collect();
        assert_eq!(members, fleet.iter().copied().collect());
    }
    assert_ne!(opened[0]["incidentId"], opened[1]["incidentId"]);
    for m in &h.fx.members {
        let expected = if m.tenant.as_ref() == "acme" {
            &acme
        } else {
            &globex
        };
        assert!(expected.contains(&m.integration_id));
    }
    // An event naming the wrong tenant for an integration is ignored.
    let before = h.fx.tags.len();
    h.fail("globex", acme[0]);
    assert_eq!(h.fx.tags.len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_single_failure_opens_nothing_and_is_let_go_after_the_hold() {
    let mut h = Harness::new(settings());
    let fleet = h.fleet("acme", 50, &[provider()]);
    let seq = h.fail("acme", fleet[0]);
    let now = h.now();
    assert_eq!(h.c.gate(now, seq), seq - 1);
    assert_eq!(
        h.c.next_decision(),
        Some(now + chrono::Duration::seconds(10))
    );
    h.advance(9).await;
    let now = h.now();
    assert_eq!(h.c.gate(now, seq), seq - 1);
    h.advance(1).await;
    let now = h.now();
    assert_eq!(h.c.gate(now, seq), seq);
    h.advance(600).await;
    assert!(h.fx.events.is_empty());
    assert!(h.fx.tags.is_empty());
    // An incompatible reason is not even held.
    let own = h.status("acme", fleet[1], "unhealthy", Some("auth_failed"));
    let now = h.now();
    assert_eq!(h.c.gate(now, own), own);
}

#[tokio::test(start_paused = true)]
async fn integrations_in_maintenance_do_not_count() {
    // The alert policy holds the events of integrations in maintenance; the correlator sees
    // what it lets through.
    let mut h = Harness::new(settings());
    let mut alerts = Alerts::new(AlertSettings::default());
    let fleet = h.fleet("acme", 6, &[provider()]);
    let now = h.now();
    for id in &fleet[..3] {
        alerts.maintenance(MaintenanceChange::Upsert(Window {
            id: Uuid::now_v7(),
            integration_id: *id,
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::hours(1),
            recurrence: None,
            until: None,
        }));
    }
    for id in &fleet[..6] {
        let t = Transition {
            integration_id: *id,
            tenant: Arc::from("acme"),
            provider_type: Arc::from("gitlab"),
            from: Status::Healthy,
            to: Status::Degraded,
            reason: Some("network"),
            message: None,
            latency_ms: None,
            checked_at: now,
            crash_loop: None,
        };
        for event in alerts.on_transition(&t, now) {
            h.status(
                "acme",
                *id,
                event.data["status"].as_str().unwrap(),
                event.data["reason"].as_str(),
            );
        }
    }
    assert!(
        h.fx.events.is_empty(),
        "three of six fail outside maintenance: under the count of five"
    );
}

#[tokio::test(start_paused = true)]
async fn the_vault_domain_opens_on_unavailable_credentials_only() {
    let mut h = Harness::new(settings());
    // Each integration at its own host, all behind one vault.
    let fleet: Vec<Uuid> = (0..6)
        .map(|i| {
            let id = Uuid::now_v7();
            let host = Domain::new(
                DomainKind::Provider,
                format!("https://h{i}.example.com:443"),
            );
            h.c.upsert(id, Arc::from("acme"), vec![host, vault()], EVERY);
            id
        })
        .collect();
    for id in &fleet {
        h.status("acme", *id, "unhealthy", Some("timeout"));
    }
    assert!(
        h.fx.events.is_empty(),
        "timeouts are the hosts', not the vault's"
    );
    for id in &fleet {
        h.status("acme", *id, "unhealthy", Some("credential_unavailable"));
    }
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["domain"]["kind"], "vault");
    assert_eq!(opened[0]["domain"]["value"], VAULT);
    assert_eq!(opened[0]["reason"], "credential_unavailable");
    assert_eq!(opened[0]["memberCount"], 5, "opened at the fifth");
    let members: std::collections::HashSet<Uuid> =
        h.fx.members.iter().map(|m| m.integration_id).collect();
    assert_eq!(members.len(), 6, "the sixth joined");
}

#[tokio::test(start_paused = true)]
async fn the_egress_outage_opens_one_incident_per_tenant_and_ends_with_it() {
    let mut h = Harness::new(settings());
    h.fleet("acme", 3, &[provider()]);
    h.fleet("globex", 2, &[]);
    let now = h.now();
    h.c.egress(true, now, &mut h.fx);
    h.c.egress(true, now, &mut h.fx);
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(
        opened.len(),
        2,
        "once per tenant, however often it is reported"
    );
    for data in &opened {
        assert_eq!(data["domain"]["kind"], "egress");
        let expected = if data["tenant"] == "acme" { 3 } else { 2 };
        assert_eq!(data["memberCount"], expected);
    }
    assert_eq!(h.c.open_counts().incidents, [0, 0, 2]);
    h.advance(60).await;
    let now = h.now();
    h.c.egress(false, now, &mut h.fx);
    assert_eq!(h.of(EventKind::IncidentResolved).len(), 2);
    assert_eq!(h.c.open_counts().incidents, [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn members_listed_are_capped_and_the_count_stays_exact() {
    let mut h = Harness::new(IncidentSettings {
        listed_members: 3,
        ..settings()
    });
    let fleet = h.fleet("acme", 8, &[provider()]);
    for id in &fleet {
        h.fail("acme", *id);
    }
    let opened = h.of(EventKind::IncidentOpened);
    assert_eq!(opened[0]["memberCount"], 5);
    assert_eq!(opened[0]["integrationIds"].as_array().unwrap().len(), 3);
    assert_eq!(opened[0]["membersTruncated"], true);
}

#[test]
fn settings_that_cannot_work_are_refused() {
    assert!(IncidentSettings::default().validate().is_ok());
    let one = IncidentSettings {
        min_members: 1,
        ..IncidentSettings::default()
    };
    assert_eq!(one.validate().unwrap_err().field, "min_members");
    let share = IncidentSettings {
        min_share: 1.5,
        ..IncidentSettings::default()
    };
    assert_eq!(share.validate().unwrap_err().field, "min_share");
}

#[test]
fn only_deliver_lets_incident_members_through() {
    let incident = Some(Uuid::now_v7());
    assert!(!IncidentMembers::Suppress.admits(incident));
    assert!(IncidentMembers::Suppress.admits(None));
    assert!(IncidentMembers::Deliver.admits(incident));
    assert_eq!(
        IncidentMembers::parse("nonsense"),
        IncidentMembers::Suppress
    );
}
