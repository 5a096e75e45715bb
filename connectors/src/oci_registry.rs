//! Any registry speaking the OCI Distribution (`/v2/`) API: Docker Hub, GHCR, ECR, GCR, ACR,
//! Quay, or a self-hosted `registry`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

/// Configuration of an OCI registry integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The registry URL, such as `https://ghcr.io`.
    pub base_url: String,
    /// The user name for basic or token authentication; the password comes from the AuthRef.
    pub username: Option<String>,
}

pub struct Factory;

impl crate::ConnectorFactory for Factory {
    fn provider_type(&self) -> &'static str {
        "oci_registry"
    }

    fn display_name(&self) -> &'static str {
        "OCI registry"
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let parsed: Config = config::parse(config)?;
        config::check_http_url("baseUrl", &parsed.base_url)?;
        Ok(())
    }
}
