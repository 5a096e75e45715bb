//! Noise control end to end under a paused clock: monitors, the result writer and the alert
//! policy together, with the events read back from the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use connectors::{Connector, HealthReport, Reason};
use ractor::{Actor, ActorRef};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use super::alerts::{AlertSettings, MaintenanceChange};
use super::clock::Clock;
use super::maintenance::Window;
use super::{EventKind, StoredEvent};
use crate::health::monitor::EngineContext;
use crate::health::monitor::MonitorSpec;
use crate::health::settings::HealthSettings;
use crate::health::supervisor::{MonitorSupervisor, SupervisorMsg};
use crate::health::writer::{ResultWriter, WriteOp, WriterOptions};
use crate::status::Status;
use crate::store::Store;

const HEALTHY: u8 = 0;
const UNHEALTHY: u8 = 1;
/// Alternates, starting with unhealthy.
const ALTERNATING: u8 = 2;
/// An external plugin whose process fails on every call.
const PLUGIN_CRASHING: u8 = 3;

/// A connector whose answer the test switches.
struct Switch {
    mode: Arc<AtomicU8>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Connector for Switch {
    async fn check_health(&self) -> HealthReport {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.mode.load(Ordering::Relaxed) == PLUGIN_CRASHING {
            return HealthReport {
                plugin_failures: Some(n as u32 + 1),
                ..HealthReport::unhealthy(Reason::ConnectorFailed, "plugin exited with status 7")
            };
        }
        let healthy = match self.mode.load(Ordering::Relaxed) {
            HEALTHY => true,
            UNHEALTHY => false,
            _ => n % 2 == 1,
        };
        if healthy {
            HealthReport::healthy()
        } else {
            HealthReport::unhealthy(Reason::ProviderDegraded, "switched off")
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    writer: ResultWriter,
    supervisor: ActorRef<SupervisorMsg>,
    clock: Clock,
    id: Uuid,
    mode: Arc<AtomicU8>,
}

fn health(thresholds: (u32, u32, u32)) -> HealthSettings {
    HealthSettings {
        interval_seconds: 60,
        jitter: 0.0,
        backoff_min_seconds: 60,
        backoff_max_seconds: 60,
        degraded_after: thresholds.0,
        unhealthy_after: thresholds.1,
        healthy_after: thresholds.2,
        ..HealthSettings::default()
    }
}

/// A database that outlives a paused clock: a file (or PostgreSQL), not an in-memory SQLite
/// whose only connection the pool could recycle when virtual time races ahead, and no
/// acquire timeout that virtual time could trip.
async fn store(dir: &std::path::Path) -> Store {
    let url = crate::db::testing::fresh_url(dir).await;
    let settings = crate::db::PoolSettings {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(365 * 86_400),
    };
    let db = crate::db::connect(&url, &settings).await.unwrap();
    crate::db::migrate(&db).await.unwrap();
    Store::new(db)
}

async fn harness(alerts: AlertSettings, health: HealthSettings, mode: u8) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let clock = Clock::tokio(chrono::Utc::now());
    let (writer, _task) = ResultWriter::spawn(
        store.clone(),
        WriterOptions {
            batch: 100,
            flush: Duration::from_millis(10),
            buffer: 10_000,
            alerts,
            clock,
            tick: Duration::from_secs(1),
            ..WriterOptions::default()
        },
    );
    let ctx = Arc::new(EngineContext {
        schedule: health.schedule().unwrap(),
        writer: writer.clone(),
        clock,
        timers: crate::health::timers::Timers::spawn(),
        egress: Default::default(),
    });
    let (supervisor, _) = Actor::spawn(None, MonitorSupervisor, ctx).await.unwrap();
    let mode = Arc::new(AtomicU8::new(mode));
    let id = Uuid::now_v7();
    let connector = Arc::new(Switch {
        mode: mode.clone(),
        calls: AtomicUsize::new(0),
    });
    let spec = Arc::new(MonitorSpec::new(
        id,
        Arc::from("acme"),
        Arc::from("switch"),
        1,
        Duration::from_secs(60),
        false,
        Ok(connector),
        Status::Unknown,
    ));
    // The database is set up on the real clock; from here on, time moves only when the test
    // says so.
    tokio::time::pause();
    supervisor
        .send_message(SupervisorMsg::Upsert(spec))
        .unwrap();
    Harness {
        _dir: dir,
        store,
        writer,
        supervisor,
        clock,
        id,
        mode,
    }
}

impl Harness {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }

    /// Waits until the writer has written everything so far. The clock runs for real
    /// meanwhile (a paused one would race ahead whenever the runtime idles on the database);
    /// that is milliseconds against timers a virtual second or more away.
    async fn sync(&self) {
        tokio::time::resume();
        let (written, flushed) = tokio::sync::oneshot::channel();
        self.writer.record(WriteOp::Flush(written)).await;
        flushed.await.unwrap();
        tokio::time::pause();
    }

    /// Every event of the integration written so far, in outbox order.
    async fn events(&self) -> Vec<StoredEvent> {
        self.sync().await;
        tokio::time::resume();
        let all = self.store.system().events_after(0, 10_000).await.unwrap();
        tokio::time::pause();
        all.into_iter()
            .filter(|e| e.integration_id == Some(self.id))
            .collect()
    }

    async fn kinds(&self) -> Vec<EventKind> {
        self.events()
            .await
            .iter()
            .map(|e| EventKind::parse(&e.event_type).unwrap())
            .collect()
    }

    fn stop(&self) {
        self.supervisor.stop(None);
    }
}

fn data(e: &StoredEvent) -> &serde_json::Value {
    &e.payload["data"]
}

/// Lets virtual time pass in one-second steps, so every timer fires in order, and lets the
/// writer catch up every ten virtual seconds.
async fn advance(h: &Harness, seconds: u64) {
    for step in 1..=seconds {
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        if step % 10 == 0 {
            h.sync().await;
        }
    }
    h.sync().await;
}

fn quiet() -> AlertSettings {
    AlertSettings {
        reminder_interval_seconds: 0,
        flap_transitions: 100,
        ..AlertSettings::default()
    }
}

#[tokio::test]
async fn a_failure_and_its_recovery_are_events() {
    let h = harness(quiet(), health((1, 3, 2)), UNHEALTHY).await;
    advance(&h, 400).await;
    h.set(HEALTHY);
    advance(&h, 300).await;
    let events = h.events().await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| EventKind::parse(&e.event_type).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::HealthChanged,
            EventKind::HealthChanged,
            EventKind::HealthRecovered
        ]
    );
    let steps: Vec<_> = events
        .iter()
        .map(|e| (data(e)["previousStatus"].clone(), data(e)["status"].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            ("unknown".into(), "degraded".into()),
            ("degraded".into(), "unhealthy".into()),
            ("unhealthy".into(), "healthy".into()),
        ]
    );
    assert_eq!(events[1].payload["data"]["reason"], "provider_degraded");
    assert_eq!(events[1].payload["specversion"], "1.0");
    assert_eq!(events[1].payload["tenant"], "acme");
    h.stop();
}

#[tokio::test]
async fn reminders_repeat_while_unhealthy_and_stop_on_recovery() {
    let alerts = AlertSettings {
        reminder_interval_seconds: 600,
        ..quiet()
    };
    let h = harness(alerts, health((1, 3, 2)), UNHEALTHY).await;
    // Unhealthy after the third failure: at most 60 + 2 × 60 s in.
    advance(&h, 180).await;
    assert_eq!(
        h.kinds().await.last(),
        Some(&EventKind::HealthChanged),
        "unhealthy by now"
    );
    advance(&h, 1900).await;
    let reminders: Vec<_> = h
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == EventKind::HealthReminder.type_name())
        .collect();
    assert_eq!(reminders.len(), 3, "one per 600 s over 1900 s");
    for (i, r) in reminders.iter().enumerate() {
        assert_eq!(data(r)["reminder"], i + 1);
        assert_eq!(data(r)["status"], "unhealthy");
    }
    h.set(HEALTHY);
    advance(&h, 1300).await;
    let kinds = h.kinds().await;
    assert_eq!(kinds.last(), Some(&EventKind::HealthRecovered));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::HealthReminder)
            .count(),
        3,
        "no reminder after recovery"
    );
    h.stop();
}

#[tokio::test]
async fn flapping_gives_one_event_then_quiet_until_stable() {
    let alerts = AlertSettings {
        reminder_interval_seconds: 0,
        flap_transitions: 3,
        flap_window_seconds: 600,
        stable_after_seconds: 300,
        ..AlertSettings::default()
    };
    // Every check flips the status.
    let h = harness(alerts, health((1, 1, 1)), ALTERNATING).await;
    advance(&h, 900).await;
    let kinds = h.kinds().await;
    // The first result (out of unknown) is not a flap; three changes are within the limit,
    // the fourth is flapping.
    assert_eq!(
        kinds.len(),
        5,
        "the first status, three changes, then one flapping event: {kinds:?}"
    );
    assert_eq!(kinds[4], EventKind::HealthFlapping);
    assert!(
        kinds[..4]
            .iter()
            .all(|k| matches!(k, EventKind::HealthChanged | EventKind::HealthRecovered))
    );
    assert_eq!(data(&h.events().await[4])["flapping"], true);
    h.set(HEALTHY);
    // At most one more transition (to healthy), then 300 s without one.
    advance(&h, 500).await;
    let events = h.events().await;
    assert_eq!(events.len(), 6, "flapping ends with one event");
    assert_eq!(data(&events[5])["flapping"], false);
    assert_eq!(data(&events[5])["status"], "healthy");
    advance(&h, 900).await;
    assert_eq!(h.events().await.len(), 6, "quiet while stable");
    h.stop();
}

#[tokio::test]
async fn maintenance_holds_alerts_but_not_checks() {
    let h = harness(quiet(), health((1, 3, 2)), HEALTHY).await;
    advance(&h, 120).await;
    assert_eq!(
        h.kinds().await,
        [EventKind::HealthChanged],
        "unknown → healthy"
    );
    let start = h.clock.now() + chrono::Duration::seconds(60);
    let end = start + chrono::Duration::seconds(900);
    h.writer
        .record(WriteOp::Maintenance(MaintenanceChange::Upsert(Window {
            id: Uuid::now_v7(),
            integration_id: h.id,
            starts_at: start,
            ends_at: end,
            recurrence: None,
            until: None,
        })))
        .await;
    advance(&h, 120).await;
    h.set(UNHEALTHY);
    advance(&h, 600).await;
    assert_eq!(
        h.kinds().await,
        [EventKind::HealthChanged],
        "nothing while in maintenance"
    );
    // Checks go on and are recorded meanwhile.
    tokio::time::resume();
    let recorded = entity::health_check::Entity::find()
        .filter(entity::health_check::Column::IntegrationId.eq(h.id))
        .filter(entity::health_check::Column::CheckedAt.gt(start))
        .filter(entity::health_check::Column::Status.eq("unhealthy"))
        .count(&h.store.system().begin().await.unwrap())
        .await
        .unwrap();
    tokio::time::pause();
    assert!(recorded >= 5, "{recorded} unhealthy results recorded");
    advance(&h, 400).await;
    let events = h.events().await;
    assert_eq!(events.len(), 2, "one event once the window is over");
    let after = data(&events[1]);
    assert_eq!(after["afterMaintenance"], true);
    assert_eq!(after["previousStatus"], "healthy");
    assert_eq!(after["status"], "unhealthy");
    let time =
        chrono::DateTime::parse_from_rfc3339(events[1].payload["time"].as_str().unwrap()).unwrap();
    assert!(time >= end, "released at the end of the window, not before");
    h.stop();
}

#[tokio::test]
async fn a_crash_looping_plugin_is_one_event_per_loop() {
    let h = harness(quiet(), health((1, 3, 2)), PLUGIN_CRASHING).await;
    advance(&h, 600).await;
    let loops = |events: &[StoredEvent]| {
        events
            .iter()
            .filter(|e| e.event_type == EventKind::PluginCrashLoop.type_name())
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = loops(&h.events().await);
    assert_eq!(first.len(), 1, "announced once while it keeps crashing");
    assert_eq!(data(&first[0])["processFailures"], 3);
    h.set(HEALTHY);
    advance(&h, 300).await;
    h.set(PLUGIN_CRASHING);
    advance(&h, 600).await;
    assert_eq!(
        loops(&h.events().await).len(),
        2,
        "a new loop after a good check"
    );
    h.stop();
}
