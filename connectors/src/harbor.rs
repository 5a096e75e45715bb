//! Harbor registries, authenticated with a robot account referenced by the integration's
//! AuthRef.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

/// Configuration of a Harbor integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The Harbor URL, such as `https://harbor.example.com`.
    pub base_url: String,
    /// The robot account name (`robot$...`); its secret comes from the AuthRef.
    pub robot_account: Option<String>,
}

pub struct Factory;

impl crate::ConnectorFactory for Factory {
    fn provider_type(&self) -> &'static str {
        "harbor"
    }

    fn display_name(&self) -> &'static str {
        "Harbor"
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let parsed: Config = config::parse(config)?;
        config::check_http_url("baseUrl", &parsed.base_url)?;
        if let Some(robot) = &parsed.robot_account
            && (robot.is_empty() || robot.len() > 255)
        {
            return Err(ConfigError::invalid(
                "config.robotAccount",
                "must be 1 to 255 characters",
            ));
        }
        Ok(())
    }
}
