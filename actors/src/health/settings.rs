//! Settings of the health engine (the daemon's `[health]` section).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::history::changes::RawHistory;
use super::policy::Thresholds;
use crate::backoff::{Backoff, InvalidBackoff};

/// How integrations are checked. Every field has a default; see `examples/config.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// Run the health engine at all (tests of the catalog alone turn it off).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Time between checks of one integration, unless it sets its own.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Spread of each interval, as a fraction (0.1 = ±10 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Longest a check may take before it counts as `timeout`.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Consecutive failures that make an integration degraded.
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// Consecutive failures that make it unhealthy.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    /// Consecutive successes that make a failing integration healthy again.
    #[serde(default = "default_healthy_after")]
    pub healthy_after: u32,
    /// First retry delay while failing; doubles per failure.
    #[serde(default = "default_backoff_min")]
    pub backoff_min_seconds: u64,
    /// Longest retry delay while failing.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_seconds: u64,
    /// Longest pause a provider's `Retry-After` may impose.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_seconds: u64,
    /// Restarts of a crashing monitor allowed within `restart_window_seconds`.
    #[serde(default = "default_restart_limit")]
    pub restart_limit: u32,
    #[serde(default = "default_restart_window")]
    pub restart_window_seconds: u64,
    /// Delay before a monitor past its restart limit (status `error`) is tried again.
    #[serde(default = "default_error_backoff")]
    pub error_backoff_seconds: u64,
    /// How long raw check results are kept (on PostgreSQL they are dropped a whole day at a
    /// time, so up to a day longer).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// How long daily summaries are kept (hourly ones are rolled up into days before that).
    #[serde(default = "default_summary_retention_days")]
    pub summary_retention_days: u32,
    /// Age in days after which hourly summaries are rolled up into daily ones (at most the
    /// summary retention).
    #[serde(default = "default_summary_rollup_days")]
    pub summary_rollup_days: u32,
    /// Which check results are stored: `"all"`, or `"changes"` (state changes plus one sample
    /// per integration and hour, the other checks folded into it: summaries and uptime stay
    /// exact, the table holds a few rows per integration and hour instead of one per check).
    #[serde(default)]
    pub raw_history: RawHistory,
    /// Results per multi-row INSERT.
    #[serde(default = "default_writer_batch")]
    pub writer_batch: usize,
    /// Longest a result waits for its batch to fill.
    #[serde(default = "default_writer_flush_ms")]
    pub writer_flush_ms: u64,
    /// Results buffered while the database is slow or down; monitors wait beyond that.
    #[serde(default = "default_writer_buffer")]
    pub writer_buffer: usize,
    /// Supervisor shards (each supervises a share of the monitors).
    #[serde(default = "default_supervisors")]
    pub supervisors: usize,
}

const fn default_true() -> bool {
    true
}
const fn default_interval() -> u64 {
    300
}
const fn default_jitter() -> f64 {
    0.1
}
const fn default_timeout() -> u64 {
    10
}
const fn default_degraded_after() -> u32 {
    1
}
const fn default_unhealthy_after() -> u32 {
    3
}
const fn default_healthy_after() -> u32 {
    2
}
const fn default_backoff_min() -> u64 {
    30
}
const fn default_backoff_max() -> u64 {
    1800
}
const fn default_max_retry_after() -> u64 {
    3600
}
const fn default_restart_limit() -> u32 {
    5
}
const fn default_restart_window() -> u64 {
    60
}
const fn default_error_backoff() -> u64 {
    600
}
const fn default_retention_days() -> u32 {
    7
}
const fn default_summary_retention_days() -> u32 {
    90
}
const fn default_summary_rollup_days() -> u32 {
    14
}
const fn default_writer_batch() -> usize {
    1000
}
const fn default_writer_flush_ms() -> u64 {
    200
}
const fn default_writer_buffer() -> usize {
    65_536
}
const fn default_supervisors() -> usize {
    8
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            interval_seconds: default_interval(),
            jitter: default_jitter(),
            timeout_seconds: default_timeout(),
            degraded_after: default_degraded_after(),
            unhealthy_after: default_unhealthy_after(),
            healthy_after: default_healthy_after(),
            backoff_min_seconds: default_backoff_min(),
            backoff_max_seconds: default_backoff_max(),
            max_retry_after_seconds: default_max_retry_after(),
            restart_limit: default_restart_limit(),
            restart_window_seconds: default_restart_window(),
            error_backoff_seconds: default_error_backoff(),
            retention_days: default_retention_days(),
            summary_retention_days: default_summary_retention_days(),
            summary_rollup_days: default_summary_rollup_days(),
            raw_history: RawHistory::default(),
            writer_batch: default_writer_batch(),
            writer_flush_ms: default_writer_flush_ms(),
            writer_buffer: default_writer_buffer(),
            supervisors: default_supervisors(),
        }
    }
}

/// Settings checked and turned into the types the engine uses.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    pub jitter: f64,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub backoff: Backoff,
    pub max_retry_after: Duration,
    pub restart_limit: u32,
    pub restart_window: Duration,
    pub error_backoff: Duration,
    /// Which check results the monitors store.
    pub raw_history: RawHistory,
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidSettings {
    #[error("health.interval_seconds and health.timeout_seconds must be positive")]
    ZeroInterval,
    #[error("health.jitter must be a fraction from 0 to 1")]
    Jitter,
    #[error("health thresholds must be positive, and degraded_after at most unhealthy_after")]
    Thresholds,
    #[error("health backoff: {0}")]
    Backoff(#[from] InvalidBackoff),
}

impl HealthSettings {
    /// # Errors
    /// [`InvalidSettings`] naming what is wrong.
    pub fn schedule(&self) -> Result<Schedule, InvalidSettings> {
        if self.interval_seconds == 0 || self.timeout_seconds == 0 {
            return Err(InvalidSettings::ZeroInterval);
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(InvalidSettings::Jitter);
        }
        if self.degraded_after == 0
            || self.unhealthy_after == 0
            || self.healthy_after == 0
            || self.degraded_after > self.unhealthy_after
        {
            return Err(InvalidSettings::Thresholds);
        }
        Ok(Schedule {
            interval: Duration::from_secs(self.interval_seconds),
            jitter: self.jitter,
            timeout: Duration::from_secs(self.timeout_seconds),
            thresholds: Thresholds {
                degraded_after: self.degraded_after,
                unhealthy_after: self.unhealthy_after,
                healthy_after: self.healthy_after,
            },
            backoff: Backoff::try_new(
                Duration::from_secs(self.backoff_min_seconds),
                Duration::from_secs(self.backoff_max_seconds),
                0.2,
            )?,
            max_retry_after: Duration::from_secs(self.max_retry_after_seconds),
            restart_limit: self.restart_limit,
            restart_window: Duration::from_secs(self.restart_window_seconds),
            error_backoff: Duration::from_secs(self.error_backoff_seconds),
            raw_history: self.raw_history,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let s = HealthSettings::default().schedule().unwrap();
        assert_eq!(s.interval, Duration::from_secs(300));
        assert_eq!(s.timeout, Duration::from_secs(10));
        let bad = HealthSettings {
            degraded_after: 4,
            ..HealthSettings::default()
        };
        assert_eq!(bad.schedule().unwrap_err(), InvalidSettings::Thresholds);
        let bad = HealthSettings {
            interval_seconds: 0,
            ..HealthSettings::default()
        };
        assert_eq!(bad.schedule().unwrap_err(), InvalidSettings::ZeroInterval);
    }
}
