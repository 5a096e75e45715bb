//! The in-memory connector: a deterministic test double whose behaviour is set by its
//! configuration, so tests and demos can exercise every health path without a network.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

/// What every check of an in-memory integration does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub behaviour: Behaviour,
    /// For `flapping`: `h` healthy, `d` degraded, `u` unhealthy, one per check.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Simulated latency of each check, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// For `rate_limited`: the Retry-After to report.
    #[serde(default = "default_retry_after_seconds")]
    pub retry_after_seconds: u64,
}

const fn default_retry_after_seconds() -> u64 {
    60
}

/// Longest simulated latency: one hour.
const MAX_LATENCY_MS: u64 = 3_600_000;

pub struct Factory;

impl crate::ConnectorFactory for Factory {
    fn provider_type(&self) -> &'static str {
        "inmemory"
    }

    fn display_name(&self) -> &'static str {
        "In-memory (test double)"
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let parsed: Config = config::parse(config)?;
        if parsed.latency_ms > MAX_LATENCY_MS {
            return Err(ConfigError::invalid(
                "config.latencyMs",
                format!("at most {MAX_LATENCY_MS}"),
            ));
        }
        match (&parsed.behaviour, parsed.pattern.as_deref()) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectorFactory;
    use serde_json::json;

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
}
