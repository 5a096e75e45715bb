//! The health engine: one supervised actor per live integration, owning its schedule.
//!
//! # Layout
//! - [`engine`]: [`HealthEngine`], the handle the daemon holds: start-up scan, following the
//!   catalog, on-demand checks, status queries.
//! - [`supervisor`]: shards of monitors, restarted under a restart-intensity limit.
//! - [`monitor`]: [`monitor::IntegrationMonitor`], the per-integration actor: schedule with
//!   jitter, timeout, thresholds, backoff, Retry-After pauses.
//! - [`policy`]: the status state machine (pure); [`crate::backoff`]: exponential backoff (pure).
//! - [`timers`]: one timer wheel that sends every monitor its scheduled ticks.
//! - [`writer`]: the batching result writer; [`metrics`]: OpenTelemetry instruments.
//! - [`history`]: the history's upkeep: hourly summaries, daily roll-ups, retention.
//! - [`settings`]: the `[health]` configuration.
//! - [`egress`]: the egress self-check, whose outage holds failures instead of alerting.

pub mod egress;
pub mod engine;
pub mod history;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod settings;
pub mod supervisor;
pub mod timers;
pub mod writer;

#[cfg(test)]
mod tests;

pub use engine::{EngineError, HealthEngine};
pub use monitor::{CheckDetails, CheckResult, MonitorStatus};
pub use policy::Status;
pub use settings::HealthSettings;
