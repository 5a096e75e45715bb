//! The connector contract: what the health engine and the API call on a provider.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::authref::AuthRef;
use crate::health::HealthReport;

/// Everything a connector is built from: one integration's stored definition.
#[derive(Clone, Debug)]
pub struct IntegrationSpec {
    /// The integration's id, for logs.
    pub id: String,
    pub tenant: String,
    pub provider_type: String,
    /// The validated configuration.
    pub config: Map<String, Value>,
    /// Where the credentials are, if the provider needs any.
    pub auth_ref: Option<AuthRef>,
}

/// Services shared by every connector of the daemon (one HTTP client, and so on). Built once at
/// start-up; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ConnectorEnv {}

impl ConnectorEnv {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Why a connector could not be built or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration does not parse for this provider.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The provider does not offer this capability (or not yet in this build).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// One integration's live connector. Built by its [`crate::ConnectorFactory`] whenever the
/// integration is (re)configured; the health engine calls it on its schedule.
///
/// Doctrine (from vector's health checks): probe with the same call and permissions real use
/// needs; prefer a false positive to a false negative; cause no side effects. The runtime wraps
/// every call in a timeout, so a connector need not.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Checks the provider's health with the integration's credentials.
    async fn check_health(&self) -> HealthReport;

    /// Checks that the configuration and credentials work, before the integration is saved.
    async fn test_connection(&self) -> HealthReport {
        self.check_health().await
    }
}

/// A built connector, shared between a monitor and on-demand calls.
pub type SharedConnector = Arc<dyn Connector>;
