//! `IntegrationMonitor`: one actor per live integration, owning its schedule.
//!
//! The actor never runs a check on its own mailbox: each check is a spawned task, wrapped in
//! the timeout and a panic guard, that sends its outcome back as [`MonitorMsg::Done`]. So a
//! status query, an on-demand check or a stop is answered while a slow check is in flight. A
//! connector that panics makes the monitor fail on purpose, so its supervisor restarts it
//! under a restart-intensity limit.
//!
//! # Layout
//! - here: [`IntegrationMonitor`] and its messages; `handle` only dispatches.
//! - `context`: [`EngineContext`], what every monitor shares (schedule, writer, clock, timers).
//! - `spec`: [`MonitorSpec`], what the monitor knows of its integration, shared with the
//!   supervisor.
//! - `state`: [`MonitorState`], the state machine: results, transitions, the schedule.
//! - `check`: one check in a task of its own, its timeout and panic guard.
//! - `tests`: the handler's footprint per integration.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use connectors::{Health, HealthReport, Quota, Reason};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::metrics;
use super::policy::Status;
use super::writer::WriteOp;

mod check;
mod context;
mod spec;
mod state;

#[cfg(test)]
mod tests;

pub use check::Done;
pub use context::EngineContext;
pub use spec::MonitorSpec;
pub use state::MonitorState;

/// The result of one check, as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub health: Health,
    pub reason: Option<Reason>,
    pub message: Option<String>,
    pub latency_ms: i64,
    pub checked_at: DateTime<Utc>,
    /// Expiry dates and quota the check told, if any (boxed: most checks tell none, and the
    /// last result is kept for every integration).
    pub details: Option<Box<CheckDetails>>,
}

/// What a check told beyond its status: what will break the integration soon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckDetails {
    /// When the credential expires.
    pub credential_expires_at: Option<DateTime<Utc>>,
    /// When the provider endpoint's TLS certificate expires.
    pub certificate_expires_at: Option<DateTime<Utc>>,
    /// The provider's request quota.
    pub quota: Option<Quota>,
}

impl CheckDetails {
    /// The details of `report`, or `None` when it tells none.
    pub fn of(report: &HealthReport) -> Option<Box<Self>> {
        let details = Self {
            credential_expires_at: report.credential_expires_at,
            certificate_expires_at: report.certificate_expires_at,
            quota: report.quota,
        };
        (details != Self::default()).then(|| Box::new(details))
    }
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
    /// Checks made but not stored yet (`raw_history = "changes"`), for exact uptime.
    pub pending: crate::store::health::Pending,
}

impl From<crate::health::timers::Tick> for MonitorMsg {
    fn from(crate::health::timers::Tick(generation): crate::health::timers::Tick) -> Self {
        MonitorMsg::Tick(generation)
    }
}

/// What a monitor is sent: by the timer wheel, the engine, and its own check tasks.
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

/// The per-integration actor; its state is a [`MonitorState`].
pub struct IntegrationMonitor;

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
            // In the integration's phase, or anywhere in one interval when it has none.
            let first = state
                .spec
                .first_check_in(state.ctx.clock.now(), rand::random::<f64>());
            state.schedule(&myself, first);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MonitorMsg>,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        state.flush_history().await;
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
                    metrics::schedule_lag(Instant::now().saturating_duration_since(due));
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
                    pending: state
                        .history
                        .as_ref()
                        .map(|f| f.pending())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}
