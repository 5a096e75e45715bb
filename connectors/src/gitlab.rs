//! GitLab (gitlab.com or self-managed), authenticated with a personal, project or group
//! access token referenced by the integration's AuthRef.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

/// Configuration of a GitLab integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The instance URL, such as `https://gitlab.com`.
    pub base_url: String,
    /// Days before a token's `expires_at` at which health turns `degraded`.
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
}

const fn default_expiry_warning_days() -> u32 {
    14
}

pub struct Factory;

impl crate::ConnectorFactory for Factory {
    fn provider_type(&self) -> &'static str {
        "gitlab"
    }

    fn display_name(&self) -> &'static str {
        "GitLab"
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let parsed: Config = config::parse(config)?;
        config::check_http_url("baseUrl", &parsed.base_url)?;
        Ok(())
    }
}
