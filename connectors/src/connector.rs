//! The connector contract: what the health engine and the API call on a provider.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authref::AuthRef;
use crate::health::{HealthReport, Reason};
use crate::outbound::{Outbound, OutboundError};
use crate::secrets::{NamespaceError, Secret, SecretError, SecretResolver, TenantRef};
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

/// Why a connector could not be built or could not do what was asked. Every message is safe
/// to show: it never holds a secret, a token or a response body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration does not parse for this provider.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The provider does not offer this capability (or not yet in this build).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The integration has no AuthRef but the provider needs credentials.
    #[error("no credentials: {0}")]
    NoCredentials(&'static str),
    /// The secret behind the AuthRef could not be resolved.
    #[error("credentials unavailable: {0}")]
    Credential(#[from] SecretError),
    /// The credentials could not be used (a private key that does not parse, and so on).
    #[error("credentials unusable: {0}")]
    BadCredential(String),
    /// The provider refused the credentials (401).
    #[error("the provider refused the credentials")]
    Unauthorized,
    /// The credentials lack a permission (403).
    #[error("the credentials lack a permission")]
    Forbidden,
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The provider asked to slow down.
    #[error("the provider asked to retry later")]
    RateLimited { retry_after: Option<Duration> },
    /// No answer in time.
    #[error("the provider did not answer in time")]
    Timeout,
    /// Connection refused, reset, DNS failure.
    #[error("network: {0}")]
    Network(String),
    /// TLS handshake or certificate failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The SSRF guard refused the target (an internal address not allowed in settings).
    #[error("{0}: refused, it is or resolves to an internal address not allowed in settings")]
    TargetRefused(String),
    /// The provider failed on its side (5xx).
    #[error("the provider answered HTTP {status}")]
    Provider { status: u16 },
    /// An answer that does not match the provider's API.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
    /// A pagination cursor this connector did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
}

impl Error {
    /// The health reason this error stands for.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Config(_) | Error::Unsupported(_) => Reason::ConnectorFailed,
            Error::NoCredentials(_) | Error::Credential(_) | Error::BadCredential(_) => {
                Reason::CredentialUnavailable
            }
            Error::Unauthorized => Reason::AuthFailed,
            Error::Forbidden => Reason::Forbidden,
            Error::RateLimited { .. } => Reason::RateLimited,
            Error::Timeout => Reason::Timeout,
            Error::Network(_) | Error::TargetRefused(_) => Reason::Network,
            Error::Tls(_) => Reason::Tls,
            Error::Provider { .. } => Reason::ProviderDegraded,
            Error::NotFound(_) | Error::BadResponse(_) | Error::InvalidCursor => {
                Reason::BadResponse
            }
        }
    }

    /// How long the provider (or the secret store) asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => {
                Some(retry_after.unwrap_or(crate::outbound::DEFAULT_RETRY_AFTER))
            }
            Error::Credential(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The unhealthy report of a check that failed with this error.
    pub fn to_report(&self) -> HealthReport {
        HealthReport {
            retry_after: self.retry_after(),
            ..HealthReport::unhealthy(self.reason(), self.to_string())
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // Drop the URL: it is safe today, but query strings are not ours to print.
        let e = e.without_url();
        if e.is_timeout() {
            return Error::Timeout;
        }
        if e.is_decode() {
            return Error::BadResponse("undecodable body".into());
        }
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<crate::outbound::Refused>() {
                return Error::TargetRefused(refused.host.clone());
            }
            if s.downcast_ref::<rustls::Error>().is_some() {
                return Error::Tls(s.to_string());
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return Error::Timeout;
                }
                if let Some(tls) = tls_inside(io) {
                    return Error::Tls(tls.to_string());
                }
            }
            chain = s.to_string();
            source = s.source();
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            Error::Tls(chain)
        } else {
            Error::Network(chain)
        }
    }
}

/// The rustls error inside (possibly nested) `io::Error`s, whose `source()` skips the error
/// they wrap.
fn tls_inside(io: &std::io::Error) -> Option<&rustls::Error> {
    let inner = io.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    inner.downcast_ref::<std::io::Error>().and_then(tls_inside)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    #[test]
    fn every_error_is_an_unhealthy_report_with_its_reason() {
        let sealed = SecretError::Sealed {
            reference: "authref://vault/secret/x#y".into(),
        };
        let vault_limited = SecretError::RateLimited {
            reference: "authref://vault/secret/x#y".into(),
            retry_after: Some(Duration::from_secs(4)),
        };
        for (error, reason, retry_after) in [
            (Error::Unauthorized, Reason::AuthFailed, None),
            (Error::Forbidden, Reason::Forbidden, None),
            (
                Error::RateLimited { retry_after: None },
                Reason::RateLimited,
                Some(crate::outbound::DEFAULT_RETRY_AFTER),
            ),
            (Error::Timeout, Reason::Timeout, None),
            (Error::Network("refused".into()), Reason::Network, None),
            (
                Error::TargetRefused("10.0.0.1".into()),
                Reason::Network,
                None,
            ),
            (Error::Tls("bad certificate".into()), Reason::Tls, None),
            (
                Error::Provider { status: 502 },
                Reason::ProviderDegraded,
                None,
            ),
            (Error::BadResponse("x".into()), Reason::BadResponse, None),
            (Error::NotFound("x".into()), Reason::BadResponse, None),
            (
                Error::Credential(sealed),
                Reason::CredentialUnavailable,
                None,
            ),
            (
                Error::Credential(vault_limited),
                Reason::CredentialUnavailable,
                Some(Duration::from_secs(4)),
            ),
            (
                Error::NoCredentials("x"),
                Reason::CredentialUnavailable,
                None,
            ),
        ] {
            let report = error.to_report();
            assert_eq!(report.health, Health::Unhealthy, "{error:?}");
            assert_eq!(report.reason, Some(reason), "{error:?}");
            assert_eq!(report.retry_after, retry_after, "{error:?}");
            assert_eq!(report.message.as_deref(), Some(error.to_string().as_str()));
        }
    }
}
