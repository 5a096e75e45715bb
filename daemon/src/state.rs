//! [`AppState`]: what every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use actors::events::hub::EventHub;
use actors::health::HealthEngine;
use actors::registry::{PluginRegistry, SharedRegistry};
use actors::sinks::webhooks::WebhookSettings;
use actors::{Catalog, Store};

use crate::auth;

/// Shared by every request handler.
pub struct AppState {
    pub store: Store,
    pub catalog: Catalog,
    /// Built-in and discovered connectors, shared with the health engine.
    pub registry: SharedRegistry,
    pub plugins: PluginRegistry,
    /// Shared with [`crate::Running`], which reloads its keys on `SIGHUP`.
    pub auth: Arc<auth::Authenticator>,
    /// Shared by every connector built outside the health engine (resources, webhooks,
    /// verification before save).
    pub env: connectors::ConnectorEnv,
    /// `None` when `[health] enabled = false`.
    pub health: Option<HealthEngine>,
    /// Committed health events, live (the outbox holds them all).
    pub events: EventHub,
    /// `[events.webhooks]`, for test deliveries made from the API.
    pub webhooks: WebhookSettings,
    /// Longest life of one event stream.
    pub stream_max: Duration,
    /// Longest a `?verify=true` connection test may take: `[health] timeout_seconds`, the
    /// limit of every health check, as the test is one.
    pub verify_timeout: Duration,
    /// In a cluster: what this replica owns, and how to reach the others.
    pub cluster: Option<crate::api::cluster::ClusterState>,
    /// Turns `true` when the daemon shuts down: event streams end at once instead of holding
    /// the graceful shutdown for its whole grace period.
    pub shutting_down: tokio::sync::watch::Receiver<bool>,
    /// `http.public_url` without a trailing `/`: `Location` headers are absolute when set.
    pub public_url: Option<String>,
}

impl AppState {
    /// The `Location` of `path` (which starts with `/`): absolute under `http.public_url`
    /// when it is set, else the path alone (which RFC 9110 resolves against the request).
    pub fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        }
    }

    /// The connector of a provider type, if one is registered now.
    pub fn factory(&self, provider_type: &str) -> Option<Arc<dyn connectors::ConnectorFactory>> {
        self.registry
            .read()
            .expect("registry lock")
            .get(provider_type)
            .cloned()
    }

    /// Builds the live connector of a catalog row.
    ///
    /// # Errors
    /// The connector's error (unknown type, configuration, unsupported).
    pub fn connector_for(
        &self,
        m: &entity::integration::Model,
    ) -> Result<connectors::SharedConnector, connectors::connector::Error> {
        let factory =
            self.factory(&m.provider_type)
                .ok_or(connectors::connector::Error::Unsupported(
                    "no connector is registered for this type",
                ))?;
        factory.build(&actors::health::engine::integration_spec(m), &self.env)
    }
}
