//! The connector contract: what the health engine and the API call on a provider.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authref::AuthRef;
pub use crate::error::Error;
use crate::health::{HealthReport, Reason};
use crate::outbound::{Outbound, OutboundError, TokenCache};
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
    /// Tokens the cloud registries mint (ECR, Artifact Registry, ACR, GHCR), per tenant and
    /// integration.
    pub cloud_tokens: crate::cloud_registry::TokenCache,
    /// Tokens minted by providers (registry bearer tokens, cloud access tokens), kept until
    /// shortly before they expire, per tenant, integration and credential.
    pub tokens: TokenCache,
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
            cloud_tokens: crate::cloud_registry::TokenCache::default(),
            tokens: TokenCache::new(settings.outbound.token_cache_max_entries),
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

/// `report` with the expiry `at` of the secret behind `credential`: the earlier of it and any
/// expiry the provider told, warned `credential_expiring` (if the report was healthy) within
/// `horizon` (zero: never), the date in the message.
pub fn judge_secret_expiry(
    report: HealthReport,
    credential: &TenantRef,
    at: chrono::DateTime<chrono::Utc>,
    horizon: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> HealthReport {
    let mut report = report;
    report.credential_expires_at = Some(report.credential_expires_at.map_or(at, |c| c.min(at)));
    if horizon > chrono::Duration::zero() && at - now <= horizon {
        let day = at.format("%Y-%m-%d %H:%M UTC");
        let message = if at <= now {
            format!("the secret behind {credential} expired on {day}")
        } else {
            format!(
                "the secret behind {credential} expires on {day}, in {} days",
                (at - now).num_days()
            )
        };
        report = report.warn(Reason::CredentialExpiring, message);
    }
    report
}

/// A built-in connector whose integration has a credential: its checks also judge the
/// secret's own expiry, where the secret store tells it ([`judge_secret_expiry`]). The secret
/// is resolved through the tenant-scoped resolver with the integration's own [`TenantRef`],
/// from its cache after a check that used it.
pub(crate) struct SecretExpiry {
    inner: SharedConnector,
    credential: TenantRef,
    env: ConnectorEnv,
}

impl SecretExpiry {
    pub(crate) fn new(inner: SharedConnector, credential: TenantRef, env: ConnectorEnv) -> Self {
        Self {
            inner,
            credential,
            env,
        }
    }

    async fn judge(&self, report: HealthReport) -> HealthReport {
        // A check that could not resolve the secret has said so already.
        if report.reason == Some(Reason::CredentialUnavailable) {
            return report;
        }
        let Ok(resolved) = self.env.secrets.resolve(&self.credential).await else {
            return report;
        };
        match resolved.expires_at() {
            Some(at) => judge_secret_expiry(
                report,
                &self.credential,
                at,
                self.env.secrets.expiry_warning(),
                chrono::Utc::now(),
            ),
            None => report,
        }
    }
}

#[async_trait::async_trait]
impl Connector for SecretExpiry {
    async fn check_health(&self) -> HealthReport {
        let report = self.inner.check_health().await;
        self.judge(report).await
    }

    async fn test_connection(&self) -> HealthReport {
        let report = self.inner.test_connection().await;
        self.judge(report).await
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        self.inner.list_resources(cursor).await
    }

    async fn setup_webhook(&self, request: &WebhookRequest) -> Result<Webhook, Error> {
        self.inner.setup_webhook(request).await
    }
}

/// A built connector, shared between a monitor and on-demand calls.
pub type SharedConnector = Arc<dyn Connector>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    fn credential(tenant: &str) -> TenantRef {
        TenantRef::new(
            tenant,
            format!("authref://vault/secret/tenants/{tenant}/gitlab#token")
                .parse()
                .unwrap(),
        )
    }

    #[test]
    fn a_secret_expiry_warns_at_the_horizon_and_not_before() {
        let now = chrono::Utc::now();
        let horizon = chrono::Duration::days(14);
        let c = credential("acme");
        let later = now + chrono::Duration::days(15);
        let r = judge_secret_expiry(HealthReport::healthy(), &c, later, horizon, now);
        assert_eq!(r.health, Health::Healthy);
        assert_eq!(r.credential_expires_at, Some(later));
        let soon = now + chrono::Duration::days(14);
        let r = judge_secret_expiry(HealthReport::healthy(), &c, soon, horizon, now);
        assert_eq!(r.reason, Some(Reason::CredentialExpiring));
        let message = r.message.unwrap();
        assert!(
            message.contains(&soon.format("%Y-%m-%d").to_string()),
            "{message}"
        );
        assert!(message.contains("authref://vault/secret/tenants/acme/gitlab#token"));
        // the earlier of the provider's and the store's dates is reported
        let provider =
            HealthReport::healthy().with_credential_expiry(now + chrono::Duration::days(3));
        let r = judge_secret_expiry(provider, &c, later, horizon, now);
        assert_eq!(
            r.credential_expires_at,
            Some(now + chrono::Duration::days(3))
        );
        let r = judge_secret_expiry(
            HealthReport::healthy(),
            &c,
            soon,
            chrono::Duration::zero(),
            now,
        );
        assert_eq!(r.health, Health::Healthy, "0 days turns the warning off");
    }

    /// The expiry comes from the integration's own tenant-scoped reference: a tenant naming
    /// another tenant's secret learns neither the secret nor its expiry.
    #[tokio::test]
    async fn the_secret_expiry_is_read_within_the_tenant_only() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        crate::testing::install_crypto();
        let vault = MockServer::start().await;
        let expires = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive();
        Mock::given(method("GET"))
            .and(path("/v1/secret/data/tenants/acme/gitlab"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": {"data": {"token": "glpat-acme"},
                         "metadata": {"custom_metadata": {"expires_at": expires.to_string()}}}
            })))
            .mount(&vault)
            .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vault-token"), "s.daemon").unwrap();
        let env = crate::testing::loopback_env_with(dir.path(), |s| {
            s.secrets.vault_addr = Some(vault.uri());
            s.secrets.vault_token_file = Some(dir.path().join("vault-token"));
        });
        struct Healthy;
        #[async_trait::async_trait]
        impl Connector for Healthy {
            async fn check_health(&self) -> HealthReport {
                HealthReport::healthy()
            }
        }
        let healthy: SharedConnector = Arc::new(Healthy);
        let own = SecretExpiry::new(healthy.clone(), credential("acme"), env.clone());
        let r = own.check_health().await;
        assert_eq!(
            (r.health, r.reason),
            (Health::Degraded, Some(Reason::CredentialExpiring)),
            "{r:?}"
        );
        assert_eq!(
            r.credential_expires_at.map(|t| t.date_naive()),
            Some(expires)
        );
        assert!(r.message.unwrap().contains(&expires.to_string()));

        let foreign = TenantRef::new(
            "mallory",
            "authref://vault/secret/tenants/acme/gitlab#token"
                .parse()
                .unwrap(),
        );
        let other = SecretExpiry::new(healthy, foreign, env);
        let r = other.check_health().await;
        assert_eq!(r, HealthReport::healthy(), "nothing of acme's secret leaks");
    }
}
