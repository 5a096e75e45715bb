//! One check, run off the monitor's mailbox: a spawned task wrapped in the timeout and a panic
//! guard, whose outcome comes back to the monitor as [`MonitorMsg::Done`].

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::{HealthReport, Reason};
use futures::FutureExt;
use ractor::{ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tracing::Instrument;

use super::{CheckResult, MonitorMsg, MonitorState};
use crate::health::metrics;

/// A finished check, as it comes back to the monitor.
pub struct Done {
    pub(super) outcome: Outcome,
    pub(super) latency: Duration,
    pub(super) checked_at: DateTime<Utc>,
    /// A scheduled check (not one asked for): its end schedules the next.
    pub(super) scheduled: bool,
    /// Who asked for the check, if someone did.
    pub(super) reply: Option<RpcReplyPort<CheckResult>>,
}

/// How a check ended.
pub(super) enum Outcome {
    Report(HealthReport),
    TimedOut,
    Panicked,
}

impl Outcome {
    /// What the check reports: a timeout or a panic counts as an unhealthy result, like any
    /// other failure.
    pub(super) fn into_report(self, timeout: Duration) -> HealthReport {
        match self {
            Outcome::Report(report) => report,
            Outcome::TimedOut => HealthReport::unhealthy(
                Reason::Timeout,
                format!("no answer within {} s", timeout.as_secs()),
            ),
            Outcome::Panicked => {
                HealthReport::unhealthy(Reason::ConnectorFailed, "the connector panicked")
            }
        }
    }
}

// === impl MonitorState ===

impl MonitorState {
    /// Runs one check in a task of its own, under the timeout and a panic guard; its outcome
    /// comes back as [`MonitorMsg::Done`].
    pub(super) fn start_check(
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
}
