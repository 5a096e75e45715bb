//! The engine's actors under a paused clock: schedule, jitter, thresholds, backoff,
//! Retry-After, timeouts, panics and restarts, deletes, reconfiguration, on-demand checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::{Connector, HealthReport, Reason};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::time::Instant;
use uuid::Uuid;

use super::monitor::EngineContext;
use super::monitor::{MonitorMsg, MonitorSpec};
use super::policy::Status;
use super::settings::HealthSettings;
use super::supervisor::{MonitorSupervisor, SupervisorMsg};
use super::writer::{ResultWriter, WriterOptions};
use crate::store::testing;

/// What a scripted connector does on each call.
#[derive(Clone, Copy, Debug)]
enum Step {
    Healthy,
    Fail,
    RateLimited(u64),
    /// Degraded `quota_low`, the quota resetting this many seconds after the check.
    QuotaLow(i64),
    Sleep(u64),
    Hang,
    Panic,
}

/// A connector that records when it is called and plays a script (the last step repeats).
struct Scripted {
    calls: Arc<Mutex<Vec<Instant>>>,
    script: Vec<Step>,
}

#[async_trait::async_trait]
impl Connector for Scripted {
    async fn check_health(&self) -> HealthReport {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len() - 1
        };
        match self.script[n.min(self.script.len() - 1)] {
            Step::Healthy => HealthReport::healthy(),
            Step::Fail => HealthReport::unhealthy(Reason::ProviderDegraded, "scripted failure"),
            Step::RateLimited(s) => HealthReport::rate_limited(Duration::from_secs(s)),
            Step::QuotaLow(reset_in) => HealthReport {
                quota: Some(connectors::Quota {
                    remaining: 3,
                    limit: Some(100),
                    reset_at: Some(chrono::Utc::now() + chrono::Duration::seconds(reset_in)),
                }),
                ..HealthReport::degraded(Reason::QuotaLow, "3 of 100 requests left")
            },
            Step::Sleep(s) => {
                tokio::time::sleep(Duration::from_secs(s)).await;
                HealthReport::healthy()
            }
            Step::Hang => std::future::pending().await,
            Step::Panic => panic!("scripted panic"),
        }
    }
}

struct Harness {
    supervisor: ActorRef<SupervisorMsg>,
}

async fn harness(settings: HealthSettings) -> Harness {
    let store = testing::store().await;
    let (writer, _task) = ResultWriter::spawn(
        store,
        WriterOptions {
            batch: 100,
            flush: Duration::from_millis(10),
            buffer: 10_000,
            ..WriterOptions::default()
        },
    );
    let ctx = Arc::new(EngineContext {
        schedule: settings.schedule().unwrap(),
        writer,
        clock: Default::default(),
        timers: crate::health::timers::Timers::spawn(),
        egress: Default::default(),
    });
    let (supervisor, _) = Actor::spawn(None, MonitorSupervisor, ctx).await.unwrap();
    Harness { supervisor }
}

fn settings() -> HealthSettings {
    HealthSettings {
        interval_seconds: 60,
        jitter: 0.1,
        timeout_seconds: 10,
        backoff_min_seconds: 5,
        backoff_max_seconds: 40,
        ..HealthSettings::default()
    }
}

struct Monitored {
    id: Uuid,
    spec: Arc<MonitorSpec>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

fn monitored(script: &[Step], interval: u64, version: i64) -> Monitored {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let connector = Arc::new(Scripted {
        calls: calls.clone(),
        script: script.to_vec(),
    });
    let id = Uuid::now_v7();
    Monitored {
        id,
        spec: spec_for(id, connector, interval, version, false),
        calls,
    }
}

fn spec_for(
    id: Uuid,
    connector: Arc<Scripted>,
    interval: u64,
    version: i64,
    paused: bool,
) -> Arc<MonitorSpec> {
    Arc::new(MonitorSpec::new(
        id,
        Arc::from("tenant"),
        Arc::from("scripted"),
        version,
        Duration::from_secs(interval),
        paused,
        Ok(connector),
        Status::Unknown,
    ))
}

impl Harness {
    fn start(&self, m: &Monitored) {
        self.supervisor
            .send_message(SupervisorMsg::Upsert(m.spec.clone()))
            .unwrap();
    }

    async fn monitor(&self, id: Uuid) -> Option<ActorRef<MonitorMsg>> {
        match self
            .supervisor
            .call(|r| SupervisorMsg::Lookup(id, r), None)
            .await
            .unwrap()
        {
            CallResult::Success(m) => m,
            _ => None,
        }
    }
}

async fn advance(seconds: u64) {
    // Step in small increments so every due timer fires in order.
    for _ in 0..seconds * 10 {
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
}

fn gaps(calls: &Mutex<Vec<Instant>>) -> Vec<f64> {
    let calls = calls.lock().unwrap();
    calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn checks_follow_the_interval_with_jitter_and_a_spread_start() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let m = monitored(&[Step::Healthy], 60, 1);
    let start = Instant::now();
    h.start(&m);
    advance(60 * 10 + 5).await;
    let calls = m.calls.lock().unwrap().clone();
    assert!(
        (calls[0] - start) < Duration::from_secs(61),
        "the first check falls within one interval"
    );
    let g = gaps(&m.calls);
    assert!(g.len() >= 8, "{g:?}");
    assert!(
        g.iter().all(|d| (53.9..=66.1).contains(d)),
        "interval ±10 %: {g:?}"
    );
    assert!(
        g.iter().any(|d| (d - 60.0).abs() > 0.05),
        "jitter spreads the interval: {g:?}"
    );
}

#[tokio::test]
async fn failures_back_off_exponentially_up_to_the_cap() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let m = monitored(&[Step::Fail], 60, 1);
    h.start(&m);
    advance(400).await;
    let g = gaps(&m.calls);
    // backoff 5, 10, 20, 40, 40 … with ±20 % jitter, capped at 40.
    let expected = [5.0, 10.0, 20.0, 40.0, 40.0, 40.0];
    for (gap, want) in g.iter().zip(expected) {
        assert!(
            *gap >= want * 0.79 && *gap <= f64::min(want * 1.21, 40.0) + 0.11,
            "{g:?}"
        );
    }
    assert!(g.len() >= expected.len(), "{g:?}");
    let status = h
        .monitor(m.id)
        .await
        .unwrap()
        .call(MonitorMsg::Status, None)
        .await
        .unwrap();
    let CallResult::Success(status) = status else {
        panic!()
    };
    assert_eq!(status.status, Status::Unhealthy);
    assert_eq!(status.reason, Some(Reason::ProviderDegraded));
}

#[tokio::test]
async fn hysteresis_needs_two_successes_to_recover() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let (f, ok) = (Step::Fail, Step::Healthy);
    let m = monitored(&[f, f, f, ok, ok, ok], 60, 1);
    h.start(&m);
    let monitor = h.monitor(m.id).await.unwrap();
    let mut seen = Vec::new();
    let mut last_calls = 0;
    for _ in 0..3000 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        let n = m.calls.lock().unwrap().len();
        if n != last_calls {
            last_calls = n;
            settle().await;
            let CallResult::Success(s) = monitor.call(MonitorMsg::Status, None).await.unwrap()
            else {
                panic!()
            };
            seen.push(s.status);
            if n == 6 {
                break;
            }
        }
    }
    use Status::{Degraded, Healthy, Unhealthy};
    assert_eq!(
        seen,
        [Degraded, Degraded, Unhealthy, Unhealthy, Healthy, Healthy]
    );
}

#[tokio::test]
async fn retry_after_pauses_without_counting_a_failure() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let m = monitored(
        &[Step::Healthy, Step::RateLimited(300), Step::Healthy],
        60,
        1,
    );
    h.start(&m);
    advance(60 + 70 + 310).await;
    let g = gaps(&m.calls);
    assert!(g.len() >= 2, "{g:?}");
    assert!(
        (299.9..=300.2).contains(&g[1]),
        "waited for Retry-After: {g:?}"
    );
    let CallResult::Success(s) = h
        .monitor(m.id)
        .await
        .unwrap()
        .call(MonitorMsg::Status, None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.status, Status::Healthy);
    assert_eq!(s.consecutive_failures, 0);
}

#[tokio::test]
async fn a_low_quota_slows_the_schedule_before_it_runs_out() {
    let h = harness(settings()).await;
    tokio::time::pause();
    // The paused clock does not move the wall clock the reset is given in, so each reset is
    // as far from its check as the script says.
    let m = monitored(
        &[
            Step::Healthy,
            Step::QuotaLow(3600),
            Step::QuotaLow(100),
            Step::Healthy,
        ],
        60,
        1,
    );
    h.start(&m);
    advance(60 + 70 + 4 * 66 + 110 + 70).await;
    let g = gaps(&m.calls);
    assert!(g.len() >= 4, "{g:?}");
    assert!((53.9..=66.1).contains(&g[0]), "the interval: {g:?}");
    assert!(
        (4.0 * 53.9..=4.0 * 66.1).contains(&g[1]),
        "four intervals while the quota is low: {g:?}"
    );
    assert!(
        (99.9..=100.2).contains(&g[2]),
        "no later than the quota's reset: {g:?}"
    );
    assert!((53.9..=66.1).contains(&g[3]), "back to the interval: {g:?}");
    let CallResult::Success(s) = h
        .monitor(m.id)
        .await
        .unwrap()
        .call(MonitorMsg::Status, None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.status, Status::Healthy);
}

#[tokio::test]
async fn a_hanging_connector_times_out_while_others_keep_their_schedule() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let hang = monitored(&[Step::Hang], 60, 1);
    let fine = monitored(&[Step::Healthy], 60, 1);
    h.start(&hang);
    h.start(&fine);
    advance(600).await;
    let g = gaps(&fine.calls);
    assert!(
        g.len() >= 8 && g.iter().all(|d| (53.9..=66.1).contains(d)),
        "{g:?}"
    );
    let CallResult::Success(s) = h
        .monitor(hang.id)
        .await
        .unwrap()
        .call(MonitorMsg::Status, None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.status, Status::Unhealthy);
    assert_eq!(s.reason, Some(Reason::Timeout));
    let last = s.last.unwrap();
    // Cut at the 10 s timeout (the test clock moves in 100 ms steps).
    assert!(
        (10_000..=10_100).contains(&last.latency_ms),
        "{}",
        last.latency_ms
    );
}

#[tokio::test]
async fn an_on_demand_check_is_answered_while_a_slow_check_is_in_flight() {
    let mut s = settings();
    s.timeout_seconds = 120;
    let h = harness(s).await;
    tokio::time::pause();
    let m = monitored(&[Step::Sleep(100), Step::Healthy], 5, 1);
    h.start(&m);
    advance(6).await;
    assert_eq!(
        m.calls.lock().unwrap().len(),
        1,
        "the slow check is in flight"
    );
    let monitor = h.monitor(m.id).await.unwrap();
    let CallResult::Success(status) = monitor.call(MonitorMsg::Status, None).await.unwrap() else {
        panic!()
    };
    assert!(status.check_in_flight);
    let before = Instant::now();
    let CallResult::Success(result) = monitor.call(MonitorMsg::CheckNow, None).await.unwrap()
    else {
        panic!()
    };
    // Answered well before the slow check (100 s) could finish, which is still in flight.
    assert!(
        Instant::now() - before < Duration::from_secs(50),
        "answered without waiting for the slow check"
    );
    let CallResult::Success(status) = monitor.call(MonitorMsg::Status, None).await.unwrap() else {
        panic!()
    };
    assert!(status.check_in_flight, "the slow check is still in flight");
    assert_eq!(result.health, connectors::Health::Healthy);
}

#[tokio::test]
async fn panics_restart_the_monitor_until_the_limit_then_error() {
    let mut s = settings();
    s.restart_limit = 3;
    s.restart_window_seconds = 3600;
    s.error_backoff_seconds = 600;
    let h = harness(s).await;
    tokio::time::pause();
    let m = monitored(&[Step::Panic], 10, 1);
    h.start(&m);
    // Each restart checks within one interval; four crashes pass the limit of three.
    for _ in 0..200 {
        advance(1).await;
        if m.calls.lock().unwrap().len() >= 4 {
            break;
        }
    }
    settle().await;
    assert_eq!(
        m.calls.lock().unwrap().len(),
        4,
        "three restarts, then no more"
    );
    assert!(
        h.monitor(m.id).await.is_none(),
        "waiting out the error backoff"
    );
    assert_eq!(m.spec.status(), Status::Error);
    advance(120).await;
    assert_eq!(m.calls.lock().unwrap().len(), 4);
    // After the error backoff the monitor is tried again.
    advance(600).await;
    assert!(
        m.calls.lock().unwrap().len() > 4,
        "retried after the error backoff"
    );
}

#[tokio::test]
async fn delete_stops_and_update_reschedules() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let m = monitored(&[Step::Healthy], 60, 1);
    h.start(&m);
    advance(130).await;
    let before = m.calls.lock().unwrap().len();
    assert!(before >= 2);

    // A newer version with a 10 s interval checks soon, then every ~10 s.
    let connector = Arc::new(Scripted {
        calls: m.calls.clone(),
        script: vec![Step::Healthy],
    });
    let newer = spec_for(m.id, connector.clone(), 10, 2, false);
    h.supervisor
        .send_message(SupervisorMsg::Upsert(newer))
        .unwrap();
    advance(6).await;
    assert_eq!(
        m.calls.lock().unwrap().len(),
        before + 1,
        "checked at once under the new config"
    );
    advance(55).await;
    let g = gaps(&m.calls);
    assert!(
        g[before..].iter().all(|d| (8.9..=11.1).contains(d)),
        "{g:?}"
    );

    // An older version is ignored.
    let stale = spec_for(m.id, connector, 60, 1, true);
    h.supervisor
        .send_message(SupervisorMsg::Upsert(stale))
        .unwrap();
    advance(30).await;
    let n = m.calls.lock().unwrap().len();

    h.supervisor
        .send_message(SupervisorMsg::Remove(m.id))
        .unwrap();
    settle().await;
    advance(120).await;
    assert_eq!(m.calls.lock().unwrap().len(), n, "no checks after delete");
    assert!(h.monitor(m.id).await.is_none());
}

#[tokio::test]
async fn paused_monitors_do_not_check_until_resumed() {
    let h = harness(settings()).await;
    tokio::time::pause();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let connector = Arc::new(Scripted {
        calls: calls.clone(),
        script: vec![Step::Healthy],
    });
    let id = Uuid::now_v7();
    let paused = spec_for(id, connector.clone(), 10, 1, true);
    h.supervisor
        .send_message(SupervisorMsg::Upsert(paused.clone()))
        .unwrap();
    advance(100).await;
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(paused.status(), Status::Paused);
    let resumed = spec_for(id, connector, 10, 2, false);
    h.supervisor
        .send_message(SupervisorMsg::Upsert(resumed.clone()))
        .unwrap();
    advance(30).await;
    assert!(calls.lock().unwrap().len() >= 2);
    assert_eq!(resumed.status(), Status::Healthy);
}

/// The change feed reaches the engine just after a write commits; a check asked for in
/// between waits for the monitor instead of failing.
#[tokio::test]
async fn a_check_asked_for_before_the_engine_hears_of_the_create_waits_for_its_monitor() {
    use crate::catalog::{Change, ChangeFeed};
    use crate::health::HealthEngine;
    use crate::store::NewIntegration;
    use crate::tenant::TenantId;

    let store = testing::store().await;
    let feed = ChangeFeed::default();
    let registry = Arc::new(std::sync::RwLock::new(connectors::Registry::with_builtins()));
    let env = connectors::ConnectorEnv::new(&Default::default()).unwrap();
    let alerting = crate::events::Alerting {
        egress: Default::default(),
        settings: Default::default(),
        hub: Default::default(),
        clock: Default::default(),
    };
    let engine = HealthEngine::start(
        store.clone(),
        &HealthSettings::default(),
        registry,
        env,
        feed.follow(),
        alerting,
        None,
    )
    .await
    .unwrap();
    // Let the start-up scan of the empty catalog finish, so only the feed can tell of the row.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let created = store
        .tenant(TenantId::new("t").unwrap())
        .integration_create(
            "test",
            NewIntegration {
                provider_type: "inmemory".into(),
                name: "late".into(),
                config: serde_json::json!({"behaviour": "healthy"})
                    .as_object()
                    .cloned()
                    .unwrap(),
                auth_ref_uri: None,
            },
        )
        .await
        .unwrap();
    let announce = {
        let feed = feed.clone();
        let created = created.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            feed.publish(Change::IntegrationUpserted(Arc::new(created)));
        })
    };
    let result = engine.check_now(created.id).await.unwrap();
    assert_eq!(result.health, connectors::Health::Healthy);
    announce.await.unwrap();
    engine.stop().await;
}
