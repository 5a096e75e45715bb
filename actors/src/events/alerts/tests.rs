//! The policy alone, with explicit times.

use super::*;
use crate::events::maintenance::Window;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn s(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

const ID: Uuid = Uuid::from_u128(7);

fn transition(from: Status, to: Status) -> Transition {
    Transition {
        integration_id: ID,
        tenant: "acme".into(),
        provider_type: "inmemory".into(),
        from,
        to,
        reason: (to != Status::Healthy).then_some("provider_degraded"),
        message: None,
        latency_ms: Some(3),
        checked_at: t0(),
        crash_loop: None,
    }
}

fn kinds(events: &[NewEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn settings() -> AlertSettings {
    AlertSettings {
        reminder_interval_seconds: 600,
        flap_transitions: 3,
        flap_window_seconds: 300,
        stable_after_seconds: 300,
        ..AlertSettings::default()
    }
}

#[test]
fn transitions_change_and_recover_and_healthy_fleets_leave_no_state() {
    let mut a = Alerts::new(settings());
    let e = a.on_transition(&transition(Status::Healthy, Status::Degraded), t0());
    assert_eq!(kinds(&e), [EventKind::HealthChanged]);
    assert_eq!(e[0].data["previousStatus"], "healthy");
    assert_eq!(e[0].data["status"], "degraded");
    let e = a.on_transition(&transition(Status::Degraded, Status::Healthy), t0() + s(60));
    assert_eq!(kinds(&e), [EventKind::HealthRecovered]);
    assert!(a.tick(t0() + s(400)).is_empty());
    assert_eq!(a.tracked(), 0);
}

#[test]
fn reminders_repeat_while_unhealthy_and_stop_on_recovery() {
    let mut a = Alerts::new(settings());
    a.on_transition(&transition(Status::Healthy, Status::Unhealthy), t0());
    assert!(a.tick(t0() + s(599)).is_empty());
    let e = a.tick(t0() + s(600));
    assert_eq!(kinds(&e), [EventKind::HealthReminder]);
    assert_eq!(e[0].data["reminder"], 1);
    assert_eq!(e[0].data["unhealthyForSeconds"], 600);
    assert_eq!(kinds(&a.tick(t0() + s(1200))), [EventKind::HealthReminder]);
    a.on_transition(
        &transition(Status::Unhealthy, Status::Healthy),
        t0() + s(1300),
    );
    assert!(a.tick(t0() + s(1800)).is_empty());
}

#[test]
fn flapping_is_announced_once_then_quiet_until_stable() {
    let mut a = Alerts::new(settings());
    let statuses = [Status::Healthy, Status::Unhealthy];
    let mut all = Vec::new();
    for i in 0..11 {
        let (from, to) = (statuses[i % 2], statuses[(i + 1) % 2]);
        all.extend(a.on_transition(&transition(from, to), t0() + s(i as i64 * 10)));
    }
    assert_eq!(
        kinds(&all),
        [
            EventKind::HealthChanged,
            EventKind::HealthRecovered,
            EventKind::HealthChanged,
            EventKind::HealthFlapping,
        ]
    );
    assert_eq!(all[3].data["flapping"], true);
    // No reminder while flapping, and not stable before 300 s without a transition.
    assert!(a.tick(t0() + s(100 + 299)).is_empty());
    let e = a.tick(t0() + s(100 + 300));
    assert_eq!(kinds(&e), [EventKind::HealthFlapping]);
    assert_eq!(e[0].data["flapping"], false);
    // The last transition (i = 10) went healthy → unhealthy.
    assert_eq!(e[0].data["status"], "unhealthy");
    // Reminders resume from the end of flapping.
    assert!(a.tick(t0() + s(999)).is_empty());
    assert_eq!(kinds(&a.tick(t0() + s(1000))), [EventKind::HealthReminder]);
}

#[test]
fn maintenance_holds_alerts_and_reports_the_change_once_it_ends() {
    let mut a = Alerts::new(settings());
    a.maintenance(MaintenanceChange::Upsert(Window {
        id: Uuid::from_u128(1),
        integration_id: ID,
        starts_at: t0(),
        ends_at: t0() + s(3600),
        recurrence: None,
        until: None,
    }));
    assert!(
        a.on_transition(
            &transition(Status::Healthy, Status::Unhealthy),
            t0() + s(10)
        )
        .is_empty()
    );
    assert!(
        a.tick(t0() + s(1800)).is_empty(),
        "no reminder during maintenance"
    );
    let e = a.tick(t0() + s(3600));
    assert_eq!(kinds(&e), [EventKind::HealthChanged]);
    assert_eq!(e[0].data["afterMaintenance"], true);
    assert_eq!(e[0].data["previousStatus"], "healthy");
    assert_eq!(e[0].data["status"], "unhealthy");

    // A window over which the integration broke and recovered leaves nothing to say.
    a.on_transition(
        &transition(Status::Unhealthy, Status::Healthy),
        t0() + s(3700),
    );
    a.maintenance(MaintenanceChange::Upsert(Window {
        id: Uuid::from_u128(2),
        integration_id: ID,
        starts_at: t0() + s(4000),
        ends_at: t0() + s(5000),
        recurrence: None,
        until: None,
    }));
    a.on_transition(
        &transition(Status::Healthy, Status::Unhealthy),
        t0() + s(4100),
    );
    a.on_transition(
        &transition(Status::Unhealthy, Status::Healthy),
        t0() + s(4200),
    );
    assert!(a.tick(t0() + s(5000)).is_empty());
}

#[test]
fn crash_loops_and_expiring_credentials_are_events() {
    let mut a = Alerts::new(settings());
    let mut t = transition(Status::Healthy, Status::Error);
    t.crash_loop = Some(4);
    let e = a.on_transition(&t, t0());
    assert_eq!(kinds(&e), [EventKind::PluginCrashLoop]);
    assert_eq!(e[0].data["restarts"], 4);

    let notice = CredentialNotice {
        integration_id: ID,
        tenant: "acme".into(),
        provider_type: "gitlab".into(),
        expires_at: t0() + s(3 * 86_400),
    };
    let e = a.on_credential(&notice, t0());
    assert_eq!(e.map(|e| e.kind), Some(EventKind::CredentialExpiring));
    assert!(
        a.on_credential(&notice, t0() + s(3600)).is_none(),
        "once a day"
    );
    assert!(a.on_credential(&notice, t0() + s(86_400)).is_some());
    let far = CredentialNotice {
        expires_at: t0() + s(90 * 86_400),
        ..notice
    };
    assert!(a.on_credential(&far, t0()).is_none());
}

#[test]
fn first_results_and_pauses_are_announced_but_are_not_flaps() {
    let mut a = Alerts::new(settings());
    // A new integration learns its status: announced, and nothing to remember once healthy.
    let e = a.on_transition(&transition(Status::Unknown, Status::Healthy), t0());
    assert_eq!(kinds(&e), [EventKind::HealthChanged]);
    assert_eq!(
        a.tracked(),
        0,
        "a healthy fleet that just started keeps no state"
    );
    // Pausing and resuming, many times, never make it flapping.
    let mut all = Vec::new();
    for i in 0..6 {
        let at = t0() + s(10 + i * 20);
        all.extend(a.on_transition(&transition(Status::Healthy, Status::Paused), at));
        all.extend(a.on_transition(&transition(Status::Paused, Status::Unknown), at + s(5)));
        all.extend(a.on_transition(&transition(Status::Unknown, Status::Healthy), at + s(10)));
    }
    assert!(all.iter().all(|e| e.kind == EventKind::HealthChanged));
    assert_eq!(all.len(), 18);
    assert_eq!(a.tracked(), 0);
    // Real changes still count: the fourth within the window is flapping (limit 3).
    let statuses = [Status::Healthy, Status::Unhealthy];
    let mut real = Vec::new();
    for i in 0..4 {
        let (from, to) = (statuses[i % 2], statuses[(i + 1) % 2]);
        real.extend(a.on_transition(&transition(from, to), t0() + s(200 + i as i64)));
    }
    assert_eq!(kinds(&real)[3], EventKind::HealthFlapping);
}
