//! The monitor's state machine: what a finished check does to the status, the schedule
//! (interval with jitter, backoff, Retry-After pauses) and the writer; reconfiguration;
//! announcing transitions.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::{HealthReport, Reason};
use ractor::{ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use super::EngineContext;
use super::check::{Done, Outcome};
use super::{CheckResult, MonitorMsg, MonitorSpec};
use crate::backoff::spread;
use crate::events::alerts::{CredentialNotice, Transition};
use crate::health::history::changes::{ChangeFilter, RawHistory};
use crate::health::metrics;
use crate::health::policy::{Status, Tracker, Verdict, quota_delay};
use crate::health::writer::WriteOp;
use crate::store::health::CheckRow;

/// Process failures in a row of an external plugin that make a crash loop worth an event.
const PLUGIN_CRASH_LOOP: u32 = 3;

/// Longest an on-demand check's answer waits for its result to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// A monitor's state: its spec, where its status stands, what is scheduled or in flight.
pub struct MonitorState {
    pub(super) spec: Arc<MonitorSpec>,
    pub(super) ctx: Arc<EngineContext>,
    pub(super) tracker: Tracker,
    pub(super) in_flight: bool,
    pub(super) generation: u32,
    pub(super) due: Option<(Instant, DateTime<Utc>)>,
    pub(super) last: Option<Box<CheckResult>>,
    /// The integration's external plugin is in a crash loop (announced once until a check
    /// reaches the plugin again).
    pub(super) plugin_crash_loop: bool,
    /// With `raw_history = "changes"`, what decides which results are stored (boxed: eight
    /// bytes per integration otherwise).
    pub(super) history: Option<Box<ChangeFilter>>,
}

// === impl MonitorState ===

impl MonitorState {
    /// A monitor's state before its first check: the status it had before, nothing scheduled.
    pub(super) fn new(spec: Arc<MonitorSpec>, ctx: Arc<EngineContext>) -> Self {
        let history = (ctx.schedule.raw_history == RawHistory::Changes).then(Default::default);
        Self {
            tracker: Tracker::new(spec.status()),
            spec,
            ctx,
            in_flight: false,
            generation: 0,
            due: None,
            last: None,
            plugin_crash_loop: false,
            history,
        }
    }

    /// Arms the next scheduled check; any earlier one becomes stale (a new generation).
    pub(super) fn schedule(&mut self, myself: &ActorRef<MonitorMsg>, delay: Duration) {
        self.generation = self.generation.wrapping_add(1);
        let at = self.ctx.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let due = Instant::now() + delay;
        self.due = Some((due, at));
        self.ctx.timers.arm(due, myself.clone(), self.generation);
    }

    /// Takes a finished check in: records the result, moves the status, answers whoever
    /// asked, and schedules the next check after a scheduled one.
    pub(super) async fn finish(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        done: Done,
    ) -> Result<(), ActorProcessingErr> {
        metrics::in_flight(-1);
        if done.scheduled {
            self.in_flight = false;
        }
        let panicked = matches!(done.outcome, Outcome::Panicked);
        let report = done.outcome.into_report(self.ctx.schedule.timeout);
        let latency_ms = i64::try_from(done.latency.as_millis()).unwrap_or(i64::MAX);
        let result = CheckResult {
            health: report.health,
            reason: report.reason,
            message: report.message.clone(),
            latency_ms,
            checked_at: done.checked_at,
            details: super::CheckDetails::of(&report),
        };
        let recorded_status = if report.retry_after.is_some() {
            "rate_limited"
        } else {
            report.health.as_str()
        };
        metrics::check_done(&self.spec.provider_type, recorded_status, done.latency);
        let credential = report.credential_expires_at.map(|expires_at| {
            Box::new(CredentialNotice {
                integration_id: self.spec.id,
                tenant: self.spec.tenant.clone(),
                provider_type: self.spec.provider_type.clone(),
                expires_at,
            })
        });
        let row = CheckRow {
            integration_id: self.spec.id,
            tenant_id: self.spec.tenant.clone(),
            checked_at: done.checked_at,
            status: recorded_status,
            reason: report.reason.map(Reason::as_str),
            latency_ms,
            error_message: report.message.as_ref().map(|m| {
                let m = if self.ctx.egress.is_down() {
                    format!("during the hub's egress outage: {m}")
                } else {
                    m.clone()
                };
                m.chars().take(1024).collect()
            }),
            folded: None,
        };
        match self.history.as_mut() {
            None => {
                let op = WriteOp::Check(row, credential);
                self.ctx.writer.record(op).await;
            }
            Some(filter) => {
                for (row, credential) in filter.admit(row, credential, done.reply.is_some()) {
                    self.ctx
                        .writer
                        .record(WriteOp::Check(row, credential))
                        .await;
                }
            }
        }

        // The hub's own outage explains a network failure: recorded (above), but no status
        // changes and nothing is announced; the schedule goes on at the usual interval.
        let held = self.ctx.egress.is_down()
            && report.health != connectors::Health::Healthy
            && report.reason.is_some_and(|r| {
                crate::events::incidents::DomainKind::Egress.compatible(r.as_str())
            });
        let verdict = if self.spec.paused {
            None
        } else if held {
            Some(Verdict::Success)
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
                Verdict::Success | Verdict::Degraded => quota_delay(
                    spread(self.spec.interval, s.jitter, rand::random::<f64>()),
                    &report,
                    done.checked_at,
                )
                .min(s.max_retry_after.max(self.spec.interval)),
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
            // Let the supervisor restart this monitor (and count the restart); what it held
            // back is stored first.
            self.flush_history().await;
            return Err("the connector panicked during a health check".into());
        }
        // With `raw_history = "changes"`: the held-back sample goes once its hour is over.
        let next = self.due.map(|(_, at)| at);
        if let Some(sample) = self.history.as_mut().and_then(|f| f.before_next(next)) {
            self.ctx
                .writer
                .record(WriteOp::Check(sample.0, sample.1))
                .await;
        }
        Ok(())
    }

    /// Stores the result held back by `raw_history = "changes"`, if any (the monitor stops,
    /// pauses or fails).
    pub(super) async fn flush_history(&mut self) {
        if let Some((row, credential)) = self.history.as_mut().and_then(|f| f.flush()) {
            self.ctx
                .writer
                .record(WriteOp::Check(row, credential))
                .await;
        }
    }

    /// Announces once when the integration's external plugin process keeps failing.
    pub(super) async fn follow_plugin(&mut self, report: &HealthReport, at: DateTime<Utc>) {
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

    /// Adopts a changed spec: pauses, resumes, or checks again soon under it.
    pub(super) async fn reconfigure(
        &mut self,
        myself: &ActorRef<MonitorMsg>,
        spec: Arc<MonitorSpec>,
    ) {
        let was_paused = self.spec.paused;
        spec.set_status(self.tracker.status);
        self.spec = spec;
        if self.spec.paused {
            // A pending tick becomes stale.
            self.generation = self.generation.wrapping_add(1);
            self.due = None;
            self.set_status(Status::Paused, None).await;
            self.flush_history().await;
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

    /// Sets a status no check gave (paused, or unknown again), announcing the transition.
    pub(super) async fn set_status(&mut self, status: Status, reason: Option<Reason>) {
        let before = self.tracker.status;
        if before == status && self.tracker.reason == reason {
            return;
        }
        self.tracker.status = status;
        self.tracker.reason = reason;
        self.announce(before, self.ctx.clock.now(), None).await;
    }

    /// The transition from `from` to the tracker's status, for the writer.
    pub(super) fn transition(
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
    pub(super) async fn announce(
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
