//! The connector contract: what the health engine and the API call on a provider.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authref::AuthRef;
pub use crate::error::Error;
use crate::health::HealthReport;
use crate::outbound::{Outbound, OutboundError};
use crate::secrets::{NamespaceError, Secret, SecretResolver, TenantRef};
use crate::settings::Settings;

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

impl IntegrationSpec {
    /// The integration's credential reference, bound to its tenant: what a connector keeps
    /// and resolves.
    pub fn credential(&self) -> Option<TenantRef> {
        self.auth_ref
            .clone()
            .map(|r| TenantRef::new(self.tenant.as_str(), r))
    }
}

/// Why [`ConnectorEnv::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error(transparent)]
    Namespaces(#[from] NamespaceError),
}

/// Services shared by every connector of the daemon: the outbound HTTP path and the secret
/// resolver. Built once at start-up from [`Settings`]; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ConnectorEnv {
    /// Every provider request goes through this (SSRF guard, rate limits, timeouts).
    pub outbound: Outbound,
    /// Resolves the integrations' AuthRefs.
    pub secrets: SecretResolver,
    /// Registry tokens the cloud registries mint, per tenant and integration.
    pub tokens: crate::cloud_registry::TokenCache,
}

impl ConnectorEnv {
    /// Builds the environment from the deployment's settings.
    ///
    /// # Errors
    /// [`EnvError`] for an allowed network that is not CIDR, a zero rate, an HTTP client that
    /// cannot be built, or tenant secret namespaces that could overlap.
    pub fn new(settings: &Settings) -> Result<Self, EnvError> {
        Ok(Self {
            outbound: Outbound::new(&settings.outbound)?,
            secrets: SecretResolver::new(&settings.secrets)?,
            tokens: crate::cloud_registry::TokenCache::default(),
        })
    }

    /// Sends the request `make` builds with the secret behind `credential`, once its URL is
    /// known to be allowed by the secret's binding. On a 401 the cached secret is dropped,
    /// resolved again and the request sent once more (the secret may have been rotated). The
    /// last response is returned whatever its status.
    ///
    /// # Errors
    /// [`Error::Credential`] when the secret cannot be resolved (outside the tenant's
    /// namespace, among others) or may not go to the request's host: then nothing is sent.
    /// The outbound errors of [`Outbound::send`].
    pub async fn send_with_secret<F>(
        &self,
        credential: &TenantRef,
        make: F,
    ) -> Result<reqwest::Response, Error>
    where
        F: Fn(&Secret) -> Result<reqwest::RequestBuilder, Error> + Send + Sync,
    {
        let resolved = self.secrets.resolve(credential).await?;
        let response = self.send_bound(credential, &resolved, &make).await?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.secrets.invalidate(credential).await;
        let fresh = self.secrets.resolve(credential).await?;
        self.send_bound(credential, &fresh, &make).await
    }

    async fn send_bound<F>(
        &self,
        credential: &TenantRef,
        resolved: &crate::secrets::Resolved,
        make: &F,
    ) -> Result<reqwest::Response, Error>
    where
        F: Fn(&Secret) -> Result<reqwest::RequestBuilder, Error> + Send + Sync,
    {
        let (client, request) = make(resolved.secret())?.build_split();
        let request = request.map_err(Error::from)?;
        resolved.check_url(credential, request.url())?;
        self.outbound
            .send(reqwest::RequestBuilder::from_parts(client, request))
            .await
    }
}

/// One repository, project or image repository behind an integration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// The provider's stable id (numeric ids as text), or the name when it has none.
    pub id: String,
    /// The full name, such as `octo-org/hello-world` or `library/nginx`.
    pub name: String,
    /// `repository`, `project` or `image_repository`.
    pub kind: &'static str,
    /// A browser URL, when the provider gives one.
    pub url: Option<String>,
}

/// One page of [`Connector::list_resources`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePage {
    pub resources: Vec<Resource>,
    /// Pass to the next call to get the next page; `None` on the last page. Opaque.
    pub next_cursor: Option<String>,
}

/// A webhook to create on the provider.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookRequest {
    /// Where on the provider: `owner/repo` for GitHub.
    pub target: String,
    /// The URL the provider will deliver to.
    pub url: String,
    /// The provider's event names, such as `push`; empty means the provider's default.
    #[serde(default)]
    pub events: Vec<String>,
    /// The signing secret, by reference (never the value).
    #[serde(default)]
    pub secret: Option<AuthRef>,
}

/// A webhook the provider created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The provider's id of the hook.
    pub id: String,
    /// The delivery URL as the provider stored it.
    pub url: String,
    /// The events it fires on.
    pub events: Vec<String>,
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

    /// One page of the repositories or projects behind the integration, following the
    /// provider's own pagination. `cursor` is `None` for the first page, then the previous
    /// page's [`ResourcePage::next_cursor`].
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless the factory lists [`crate::Capability::ListResources`];
    /// otherwise the provider's failure, [`Error::InvalidCursor`] for a foreign cursor.
    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let _ = cursor;
        Err(Error::Unsupported("this provider cannot list resources"))
    }

    /// Creates a webhook on the provider.
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless the factory lists [`crate::Capability::SetupWebhook`];
    /// otherwise the provider's failure.
    async fn setup_webhook(&self, request: &WebhookRequest) -> Result<Webhook, Error> {
        let _ = request;
        Err(Error::Unsupported("this provider cannot set up webhooks"))
    }
}

/// A built connector, shared between a monitor and on-demand calls.
pub type SharedConnector = Arc<dyn Connector>;
