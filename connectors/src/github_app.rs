//! GitHub App installations (github.com or GitHub Enterprise Server). The app's private key is
//! referenced by the integration's AuthRef.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

/// The public GitHub API.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";

/// Configuration of a GitHub App integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The numeric App ID; either this or `clientId` is required.
    pub app_id: Option<u64>,
    /// The App's client ID (`Iv1.…`), accepted by GitHub in place of the App ID.
    pub client_id: Option<String>,
    /// The installation to act as.
    pub installation_id: u64,
    /// The API root; `https://<host>/api/v3` for GitHub Enterprise Server.
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

pub struct Factory;

impl crate::ConnectorFactory for Factory {
    fn provider_type(&self) -> &'static str {
        "github_app"
    }

    fn display_name(&self) -> &'static str {
        "GitHub App"
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let parsed: Config = config::parse(config)?;
        if parsed.app_id.is_none() && parsed.client_id.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "config.appId",
                "either appId or clientId is required",
            ));
        }
        config::check_http_url("apiBaseUrl", &parsed.api_base_url)?;
        Ok(())
    }
}
