//! The connection test before a save (`?verify=true`): the configuration is tried against the
//! provider, and the save is refused when the provider cannot be reached with it.

use connectors::{Health, HealthReport, IntegrationSpec, Reason};
use tracing::Instrument;

use crate::AppState;

/// Why a configuration was not saved.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("unknown provider type")]
    UnknownType,
    /// The connector could not be built from the configuration.
    #[error(transparent)]
    Connector(#[from] connectors::connector::Error),
    /// The provider could not be reached with the configuration.
    #[error("the provider could not be reached with this configuration: {reason}: {message}")]
    Unreachable {
        reason: &'static str,
        message: String,
    },
}

impl AppState {
    /// Tests a configuration against the provider before it is saved.
    ///
    /// # Errors
    /// [`VerifyError`]: an unknown type, a configuration the connector refuses, or a provider
    /// that cannot be reached with it (in time).
    pub async fn verify(
        &self,
        tenant: &actors::TenantId,
        provider_type: &str,
        config: &serde_json::Map<String, serde_json::Value>,
        auth_ref_uri: Option<&str>,
    ) -> Result<(), VerifyError> {
        let factory = self
            .factory(provider_type)
            .ok_or(VerifyError::UnknownType)?;
        let spec = IntegrationSpec {
            id: "verify".into(),
            tenant: tenant.to_string(),
            provider_type: provider_type.to_owned(),
            config: config.clone(),
            auth_ref: auth_ref_uri.and_then(|u| u.parse().ok()),
        };
        let connector = factory.build(&spec, &self.env)?;
        // In a task of its own, as the health engine runs checks: a connector that panics
        // fails the test instead of the request. The task carries the request's span, so the
        // provider call stays in the caller's trace.
        let test = tokio::spawn(
            async move { connector.test_connection().await }.instrument(tracing::Span::current()),
        );
        let abort = test.abort_handle();
        let report = match tokio::time::timeout(self.verify_timeout, test).await {
            Ok(Ok(report)) => report,
            Ok(Err(_)) => HealthReport::unhealthy(
                Reason::ConnectorFailed,
                "the connector failed while testing the connection",
            ),
            Err(_) => {
                abort.abort();
                HealthReport::unhealthy(Reason::Timeout, "no answer in time")
            }
        };
        if report.health == Health::Unhealthy {
            return Err(VerifyError::Unreachable {
                reason: report.reason.map_or("unknown", Reason::as_str),
                message: report.message.unwrap_or_default(),
            });
        }
        Ok(())
    }
}
