//! The in-memory connector: a deterministic test double whose behaviour is set by its
//! configuration, so tests and demos can exercise every health path without a network.

use schemars::JsonSchema;
use serde::Deserialize;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::ConfigError;
use crate::connector::{Connector, ConnectorEnv, Error, IntegrationSpec, SharedConnector};
use crate::health::{HealthReport, Reason};
use crate::provider::Provider;

/// What every check of an in-memory integration does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Always passes.
    #[default]
    Healthy,
    /// Always fails.
    Unhealthy,
    /// Follows `pattern`, one character per check, cycling.
    Flapping,
    /// Never answers (the runtime's timeout must fire).
    Hang,
    /// Panics inside the connector.
    Panic,
    /// Answers as rate limited, asking to retry after `retryAfterSeconds`.
    RateLimited,
}

/// Configuration of an in-memory integration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// What every check does.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// For `flapping`: `h` healthy, `d` degraded, `u` unhealthy, one per check.
    #[serde(default)]
    #[schemars(length(max = 1024), regex(pattern = "^[hdu]*$"))]
    pub pattern: Option<String>,
    /// Simulated latency of each check, in milliseconds.
    #[serde(default)]
    #[schemars(range(max = MAX_LATENCY_MS))]
    pub latency_ms: u64,
    /// For `rate_limited`: the Retry-After to report.
    #[serde(default = "default_retry_after_seconds")]
    pub retry_after_seconds: u64,
    /// When the (simulated) credential expires; every report carries it.
    #[serde(default)]
    pub credential_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The (simulated) requests left in the provider's quota; every report carries it, with
    /// `quotaLimit`.
    #[serde(default)]
    pub quota_remaining: Option<u64>,
    /// The (simulated) quota limit.
    #[serde(default)]
    pub quota_limit: Option<u64>,
}

const fn default_retry_after_seconds() -> u64 {
    60
}

/// Longest simulated latency: one hour.
const MAX_LATENCY_MS: u64 = 3_600_000;

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "inmemory";
    const DISPLAY_NAME: &'static str = "In-memory (test double)";
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        if config.latency_ms > MAX_LATENCY_MS {
            return Err(ConfigError::invalid(
                "config.latencyMs",
                format!("at most {MAX_LATENCY_MS}"),
            ));
        }
        match (&config.behaviour, config.pattern.as_deref()) {
            (Behaviour::Flapping, None | Some("")) => Err(ConfigError::invalid(
                "config.pattern",
                "required for behaviour flapping",
            )),
            (_, Some(p)) if p.len() > 1024 || !p.chars().all(|c| matches!(c, 'h' | 'd' | 'u')) => {
                Err(ConfigError::invalid(
                    "config.pattern",
                    "at most 1024 of the letters h, d and u",
                ))
            }
            _ => Ok(()),
        }
    }

    fn connect(
        config: Config,
        _spec: &IntegrationSpec,
        _env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        Ok(Arc::new(MemoryConnector::new(config)))
    }
}

// === impl MemoryConnector ===

/// The built in-memory connector.
pub struct MemoryConnector {
    config: Config,
    /// Checks made so far, to walk the flapping pattern.
    checks: AtomicUsize,
}

impl MemoryConnector {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            checks: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Connector for MemoryConnector {
    async fn check_health(&self) -> HealthReport {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        let report = self.report(n).await;
        let report =
            report.with_quota(
                self.config
                    .quota_remaining
                    .map(|remaining| crate::health::Quota {
                        remaining,
                        limit: self.config.quota_limit,
                        reset_at: None,
                    }),
            );
        match self.config.credential_expires_at {
            Some(at) => report.with_credential_expiry(at),
            None => report,
        }
    }
}

impl MemoryConnector {
    async fn report(&self, n: usize) -> HealthReport {
        match self.config.behaviour {
            Behaviour::Healthy => HealthReport::healthy(),
            Behaviour::Unhealthy => {
                HealthReport::unhealthy(Reason::ProviderDegraded, "configured to fail")
            }
            Behaviour::Flapping => {
                let pattern = self.config.pattern.as_deref().unwrap_or("h").as_bytes();
                match pattern[n % pattern.len()] {
                    b'h' => HealthReport::healthy(),
                    b'd' => HealthReport::degraded(Reason::ProviderDegraded, "pattern step d"),
                    _ => HealthReport::unhealthy(Reason::ProviderDegraded, "pattern step u"),
                }
            }
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Panic => panic!("in-memory connector configured to panic"),
            Behaviour::RateLimited => {
                HealthReport::rate_limited(Duration::from_secs(self.config.retry_after_seconds))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectorFactory;
    use crate::config;
    use serde_json::{Value, json};

    fn check(v: Value) -> Result<(), ConfigError> {
        Factory.validate_config(v.as_object().unwrap())
    }

    #[test]
    fn config_defaults_and_limits() {
        assert!(check(json!({})).is_ok());
        assert!(check(json!({"behaviour": "flapping", "pattern": "hhu"})).is_ok());
        assert!(check(json!({"behaviour": "flapping"})).is_err());
        assert!(check(json!({"pattern": "hx"})).is_err());
        assert!(check(json!({"behaviour": "nope"})).is_err());
        assert!(check(json!({"extra": 1})).is_err());
        assert!(check(json!({"latencyMs": MAX_LATENCY_MS + 1})).is_err());
    }

    fn connector(v: Value) -> MemoryConnector {
        MemoryConnector::new(config::parse(v.as_object().unwrap()).unwrap())
    }

    #[tokio::test]
    async fn behaviours_are_deterministic() {
        assert_eq!(
            connector(json!({})).check_health().await,
            HealthReport::healthy()
        );
        let flapping = connector(json!({"behaviour": "flapping", "pattern": "hdu"}));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(flapping.check_health().await.health);
        }
        use crate::Health::*;
        assert_eq!(seen, [Healthy, Degraded, Unhealthy, Healthy]);
        let limited = connector(json!({"behaviour": "rate_limited", "retryAfterSeconds": 7}));
        assert_eq!(
            limited.check_health().await.retry_after,
            Some(Duration::from_secs(7))
        );
    }

    #[tokio::test]
    async fn conformance() {
        crate::testing::assert_conformance(crate::testing::Conformance {
            factory: &Factory,
            config: json!({"behaviour": "flapping", "pattern": "u", "latencyMs": 0, "retryAfterSeconds": 5}),
            auth_ref: None,
            env: ConnectorEnv::default(),
            expect: crate::Health::Unhealthy,
            secrets: vec![],
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_hang_follow_the_clock() {
        let slow = connector(json!({"latencyMs": 5000}));
        let started = tokio::time::Instant::now();
        slow.check_health().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let hang = connector(json!({"behaviour": "hang"}));
        let timed = tokio::time::timeout(Duration::from_secs(3600), hang.check_health()).await;
        assert!(timed.is_err());
    }
}
