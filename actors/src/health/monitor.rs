//! `IntegrationMonitor`: one actor per live integration, owning its schedule.
//!
//! The actor never runs a check on its own mailbox: each check is a spawned task, wrapped in
//! the timeout and a panic guard, that sends its outcome back as [`MonitorMsg::Done`]. So a
//! status query, an on-demand check or a stop is answered while a slow check is in flight. A
//! connector that panics makes the monitor fail on purpose, so its supervisor restarts it
//! under a restart-intensity limit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::{Health, HealthReport, Reason, SharedConnector};
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::engine::EngineContext;
use super::metrics;
use super::policy::{Status, Tracker, Verdict};
use super::writer::WriteOp;
use crate::backoff::spread;
use crate::events::alerts::{CredentialNotice, Transition};
use crate::store::health::CheckRow;

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
}

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
        };
        spec.set_status(status);
        spec
    }

    pub fn status(&self) -> Status {
        STATUSES[usize::from(self.status.load(Ordering::Relaxed)).min(STATUSES.len() - 1)]
    }

    pub fn set_status(&self, status: Status) {
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(0);
        self.status.store(i as u8, Ordering::Relaxed);
    }
}

/// The result of one check, as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub health: Health,
    pub reason: Option<Reason>,
    pub message: Option<String>,
    pub latency_ms: i64,
    pub checked_at: DateTime<Utc>,
}

/// A monitor's live state, for `GET /{id}/health`.
#[derive(Clone, Debug)]
pub struct MonitorStatus {
    pub status: Status,
    pub reason: Option<Reason>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last: Option<CheckResult>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub check_in_flight: bool,
}

/// Process failures in a row of an external plugin that make a crash loop worth an event.
const PLUGIN_CRASH_LOOP: u32 = 3;

/// Longest an on-demand check's answer waits for its result to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

pub enum MonitorMsg {
    /// A scheduled check is due (ignored unless `generation` is current).
    Tick(u32),
    /// Check now and answer with the result.
    CheckNow(RpcReplyPort<CheckResult>),
    /// A check finished.
    Done(Box<Done>),
    /// The integration changed: adopt the new spec and reschedule at once.
    Reconfigure(Arc<MonitorSpec>),
    Status(RpcReplyPort<MonitorStatus>),
}

pub struct Done {
    outcome: Outcome,
    latency: Duration,
    checked_at: DateTime<Utc>,
    scheduled: bool,
    reply: Option<RpcReplyPort<CheckResult>>,
}

enum Outcome {
    Report(HealthReport),
    TimedOut,
    Panicked,
}

pub struct IntegrationMonitor;

pub struct MonitorState {
    spec: Arc<MonitorSpec>,
    ctx: Arc<EngineContext>,
    tracker: Tracker,
    in_flight: bool,
    generation: u32,
    due: Option<(Instant, DateTime<Utc>)>,
    last: Option<Box<CheckResult>>,
    /// The integration's external plugin is in a crash loop (announced once until a check
    /// reaches the plugin again).
    plugin_crash_loop: bool,
}

// === impl IntegrationMonitor ===

impl Actor for IntegrationMonitor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = (Arc<MonitorSpec>, Arc<EngineContext>);

    async fn pre_start(
        &self,
        myself: ActorRef<MonitorMsg>,
        (spec, ctx): Self::Arguments,
    ) -> Result<MonitorState, ActorProcessingErr> {
        let mut state = MonitorState::new(spec, ctx);
        metrics::monitors(1);
        metrics::status(
            &state.spec.provider_type,
            &state.spec.tenant,
            state.tracker.status.as_str(),
            1,
        );
        if matches!(state.tracker.status, Status::Unhealthy | Status::Error) {
            // Still broken from before a restart: the alert policy keeps reminding.
            let seed = state.transition(state.tracker.status, state.ctx.clock.now(), None);
            state.ctx.writer.record(WriteOp::Seed(seed)).await;
        }
        if state.spec.paused {
            state.set_status(Status::Paused, None).await;
        } else {
            if state.tracker.status == Status::Paused {
                state.set_status(Status::Unknown, None).await;
            }
            // The first check anywhere in one interval: a fleet started at once spreads out.
            let first = state.spec.interval.mul_f64(rand::random::<f64>());
            state.schedule(&myself, first);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MonitorMsg>,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::monitors(-1);
        metrics::status(
            &state.spec.provider_type,
            &state.spec.tenant,
            state.tracker.status.as_str(),
            -1,
        );
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MonitorMsg>,
        msg: MonitorMsg,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MonitorMsg::Tick(generation) => {
                if generation != state.generation || state.in_flight || state.spec.paused {
                    return Ok(());
                }
                if let Some((due, _)) = state.due.take() {
                    metrics::schedule_lag(
                        Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0,
                    );
                }
                state.in_flight = true;
                state.start_check(&myself, true, None);
            }
            MonitorMsg::CheckNow(reply) => state.start_check(&myself, false, Some(reply)),
            // The futures of these two are boxed: ractor keeps room for the largest future of
            // `handle` in every actor for its whole life, which here means per integration.
            MonitorMsg::Done(done) => return Box::pin(state.finish(&myself, *done)).await,
            MonitorMsg::Reconfigure(spec) => Box::pin(state.reconfigure(&myself, spec)).await,
            MonitorMsg::Status(reply) => {
                let _ = reply.send(MonitorStatus {
                    status: state.tracker.status,
                    reason: state.tracker.reason,
                    consecutive_failures: state.tracker.consecutive_failures,
                    consecutive_successes: state.tracker.consecutive_successes,
                    last: state.last.as_deref().cloned(),
                    next_check_at: state.due.map(|(_, at)| at),
                    check_in_flight: state.in_flight,
                });
            }
        }
        Ok(())
    }
}

// === impl MonitorState ===

impl MonitorState {
    /// A monitor's state before its first check: the status it had before, nothing scheduled.
    fn new(spec: Arc<MonitorSpec>, ctx: Arc<EngineContext>) -> Self {
        Self {
            tracker: Tracker::new(spec.status()),
            spec,
            ctx,
            in_flight: false,
            generation: 0,
            due: None,
            last: None,
            plugin_crash_loop: false,
        }
    }

    /// Arms the next scheduled check; any earlier one becomes stale (a new generation).
    fn schedule(&mut self, myself: &ActorRef<MonitorMsg>, delay: Duration) {
        self.generation = self.generation.wrapping_add(1);
        let at = self.ctx.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let due = Instant::now() + delay;
        self.due = Some((due, at));
        self.ctx.timers.arm(due, myself.clone(), self.generation);
    }

    fn start_check(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        scheduled: bool,
        reply: Option<RpcReplyPort<CheckResult>>,
    ) {
        let connector = self.spec.connector.clone();
        let timeout = self.ctx.schedule.timeout;
        let myself = myself.clone();
        let clock = self.ctx.clock;
        // Scheduled checks are the engine's routine, thousands a second on a large fleet: their
        // spans are at DEBUG (`actors::health=debug` traces them all). A check someone asked for
        // is traced at INFO.
        let (id, tenant, provider_type) =
            (&self.spec.id, &self.spec.tenant, &self.spec.provider_type);
        let span = if scheduled {
            tracing::debug_span!(
                "health_check",
                integration_id = %id,
                tenant_id = %tenant,
                provider_type = %provider_type,
                scheduled,
            )
        } else {
            tracing::info_span!(
                "health_check",
                integration_id = %id,
                tenant_id = %tenant,
                provider_type = %provider_type,
                scheduled,
            )
        };
        metrics::in_flight(1);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let checked_at = clock.now();
                let outcome = match connector {
                    Err(why) => {
                        Outcome::Report(HealthReport::unhealthy(Reason::ConnectorFailed, &*why))
                    }
                    Ok(connector) => {
                        let check = AssertUnwindSafe(connector.check_health()).catch_unwind();
                        match tokio::time::timeout(timeout, check).await {
                            Ok(Ok(report)) => Outcome::Report(report),
                            Ok(Err(_panic)) => Outcome::Panicked,
                            Err(_elapsed) => Outcome::TimedOut,
                        }
                    }
                };
                let done = Done {
                    outcome,
                    latency: started.elapsed(),
                    checked_at,
                    scheduled,
                    reply,
                };
                // A stopped monitor no longer wants the result.
                let _ = myself.send_message(MonitorMsg::Done(Box::new(done)));
            }
            .instrument(span),
        );
    }

    async fn finish(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        done: Done,
    ) -> Result<(), ActorProcessingErr> {
        metrics::in_flight(-1);
        if done.scheduled {
            self.in_flight = false;
        }
        let panicked = matches!(done.outcome, Outcome::Panicked);
        let report = match done.outcome {
            Outcome::Report(report) => report,
            Outcome::TimedOut => HealthReport::unhealthy(
                Reason::Timeout,
                format!("no answer within {} s", self.ctx.schedule.timeout.as_secs()),
            ),
            Outcome::Panicked => {
                HealthReport::unhealthy(Reason::ConnectorFailed, "the connector panicked")
            }
        };
        let latency_ms = i64::try_from(done.latency.as_millis()).unwrap_or(i64::MAX);
        let result = CheckResult {
            health: report.health,
            reason: report.reason,
            message: report.message.clone(),
            latency_ms,
            checked_at: done.checked_at,
        };
        let recorded_status = if report.retry_after.is_some() {
            "rate_limited"
        } else {
            report.health.as_str()
        };
        metrics::check_done(
            &self.spec.provider_type,
            recorded_status,
            done.latency.as_secs_f64() * 1000.0,
        );
        let credential = report.credential_expires_at.map(|expires_at| {
            Box::new(CredentialNotice {
                integration_id: self.spec.id,
                tenant: self.spec.tenant.clone(),
                provider_type: self.spec.provider_type.clone(),
                expires_at,
            })
        });
        self.ctx
            .writer
            .record(WriteOp::Check(
                CheckRow {
                    integration_id: self.spec.id,
                    tenant_id: self.spec.tenant.clone(),
                    checked_at: done.checked_at,
                    status: recorded_status,
                    reason: report.reason.map(Reason::as_str),
                    latency_ms,
                    error_message: report
                        .message
                        .as_ref()
                        .map(|m| m.chars().take(1024).collect()),
                },
                credential,
            ))
            .await;

        let verdict = if self.spec.paused {
            None
        } else {
            let before = (self.tracker.status, self.tracker.reason);
            let verdict = self.tracker.apply(&report, &self.ctx.schedule.thresholds);
            if (self.tracker.status, self.tracker.reason) != before {
                let detail = (report.message.clone(), latency_ms);
                self.announce(before.0, done.checked_at, Some(detail)).await;
            }
            Some(verdict)
        };
        self.follow_plugin(&report, done.checked_at).await;
        self.last = Some(Box::new(result.clone()));
        if let Some(reply) = done.reply {
            // Answer once the result and any status change are written, so a read right after
            // the answer sees them; the monitor goes on meanwhile.
            let (written, flushed) = tokio::sync::oneshot::channel();
            self.ctx.writer.record(WriteOp::Flush(written)).await;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(FLUSH_WAIT, flushed).await;
                let _ = reply.send(result);
            });
        }
        if done.scheduled
            && let Some(verdict) = verdict
        {
            let s = &self.ctx.schedule;
            let delay = match verdict {
                Verdict::Success | Verdict::Degraded => {
                    spread(self.spec.interval, s.jitter, rand::random::<f64>())
                }
                Verdict::Failure => s.backoff.delay(
                    self.tracker.consecutive_failures.saturating_sub(1),
                    rand::random::<f64>(),
                ),
                Verdict::Pause => report
                    .retry_after
                    .unwrap_or(s.interval)
                    .min(s.max_retry_after),
            };
            self.schedule(myself, delay);
        }
        if panicked {
            // Let the supervisor restart this monitor (and count the restart).
            return Err("the connector panicked during a health check".into());
        }
        Ok(())
    }

    /// Announces once when the integration's external plugin process keeps failing.
    async fn follow_plugin(&mut self, report: &HealthReport, at: DateTime<Utc>) {
        match report.plugin_failures {
            Some(n) if n >= PLUGIN_CRASH_LOOP && !self.plugin_crash_loop => {
                self.plugin_crash_loop = true;
                let mut t = self.transition(self.tracker.status, at, None);
                t.crash_loop = Some(n);
                t.message = report.message.clone();
                self.ctx.writer.record(WriteOp::PluginCrashLoop(t)).await;
            }
            Some(_) => {}
            None => self.plugin_crash_loop = false,
        }
    }

    async fn reconfigure(&mut self, myself: &ActorRef<MonitorMsg>, spec: Arc<MonitorSpec>) {
        let was_paused = self.spec.paused;
        spec.set_status(self.tracker.status);
        self.spec = spec;
        if self.spec.paused {
            // A pending tick becomes stale.
            self.generation = self.generation.wrapping_add(1);
            self.due = None;
            self.set_status(Status::Paused, None).await;
            return;
        }
        if was_paused {
            self.tracker = Tracker::new(Status::Unknown);
            self.set_status(Status::Unknown, None).await;
        }
        // Check soon under the new configuration, spread so a bulk change does not stampede.
        let soon = self
            .spec
            .interval
            .min(Duration::from_secs(5))
            .mul_f64(rand::random::<f64>());
        self.schedule(myself, soon);
    }

    async fn set_status(&mut self, status: Status, reason: Option<Reason>) {
        let before = self.tracker.status;
        if before == status && self.tracker.reason == reason {
            return;
        }
        self.tracker.status = status;
        self.tracker.reason = reason;
        self.announce(before, self.ctx.clock.now(), None).await;
    }

    /// The transition from `from` to the tracker's status, for the writer.
    fn transition(
        &self,
        from: Status,
        at: DateTime<Utc>,
        detail: Option<(Option<String>, i64)>,
    ) -> Box<Transition> {
        let (message, latency_ms) = match detail {
            Some((message, latency)) => (message, Some(latency)),
            None => (None, None),
        };
        Box::new(Transition {
            integration_id: self.spec.id,
            tenant: self.spec.tenant.clone(),
            provider_type: self.spec.provider_type.clone(),
            from,
            to: self.tracker.status,
            reason: self.tracker.reason.map(Reason::as_str),
            message,
            latency_ms,
            checked_at: at,
            crash_loop: None,
        })
    }

    /// Persists and reports a transition from `before` to the tracker's status; `detail` is
    /// the message and latency of the check that caused it.
    async fn announce(
        &mut self,
        before: Status,
        at: DateTime<Utc>,
        detail: Option<(Option<String>, i64)>,
    ) {
        let now = self.tracker.status;
        self.spec.set_status(now);
        if before != now {
            metrics::status(
                &self.spec.provider_type,
                &self.spec.tenant,
                before.as_str(),
                -1,
            );
            metrics::status(&self.spec.provider_type, &self.spec.tenant, now.as_str(), 1);
        }
        tracing::info!(
            message = "Integration status changed.",
            integration_id = %self.spec.id,
            tenant_id = %self.spec.tenant,
            provider_type = %self.spec.provider_type,
            from = before.as_str(),
            to = now.as_str(),
            reason = self.tracker.reason.map(Reason::as_str),
        );
        let transition = self.transition(before, at, detail);
        self.ctx.writer.record(WriteOp::Status(transition)).await;
    }
}

#[cfg(test)]
mod footprint {
    use super::*;
    use crate::health::settings::HealthSettings;
    use crate::health::timers::Timers;
    use crate::health::writer::{ResultWriter, WriterOptions};

    /// An actor that only lends its address.
    struct Sink;

    impl Actor for Sink {
        type Msg = MonitorMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<MonitorMsg>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// ractor allocates each actor's processing loop once, with room for the largest future
    /// its handler makes, and keeps it for the actor's life: with a monitor per integration,
    /// every byte here is a byte per integration. Rare, large paths are boxed.
    #[tokio::test]
    async fn the_handler_future_is_small() {
        let (writer, _task) = ResultWriter::spawn(
            crate::store::testing::store().await,
            WriterOptions::default(),
        );
        let ctx = Arc::new(EngineContext {
            schedule: HealthSettings::default().schedule().unwrap(),
            writer,
            clock: Default::default(),
            timers: Timers::spawn(),
        });
        let spec = Arc::new(MonitorSpec::new(
            Uuid::now_v7(),
            "t".into(),
            "inmemory".into(),
            1,
            Duration::from_secs(60),
            true,
            Err("none".into()),
            Status::Unknown,
        ));
        let (myself, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        let mut state = MonitorState::new(spec, ctx);
        let size = {
            let handling =
                IntegrationMonitor.handle(myself.clone(), MonitorMsg::Tick(0), &mut state);
            std::mem::size_of_val(&handling)
        };
        // 120 bytes in a release build; 1,120 with the check's result handled unboxed.
        assert!(size <= 512, "the handler's future takes {size} bytes");
        myself.stop(None);
    }
}
