//! Azure Container Registry (ACR), with a service principal (Microsoft Entra ID application)
//! whose client secret is the secret behind the integration's AuthRef.
//!
//! Microsoft's documented exchange, three steps, each token cached per tenant and
//! integration until shortly before it expires:
//!
//! 1. `POST {authority}/{tenantId}/oauth2/v2.0/token` (client credentials, scope
//!    `https://containerregistry.azure.net/.default`): an Entra ID access token (`expires_in`).
//! 2. `POST {loginServer}/oauth2/exchange` (`grant_type=access_token`): an ACR refresh token
//!    (a JWT; its `exp`).
//! 3. `POST {loginServer}/oauth2/token` (`grant_type=refresh_token`, the scope needed): an
//!    ACR access token (a JWT; its `exp`).
//!
//! Repositories come from `GET /v2/_catalog` (ACR serves it), following `Link`; with `n=1` it
//! is also the health probe, so a check with the tokens cached is one request.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use super::tokens::{Minted, TokenKey};
use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, ResourcePage, SharedConnector,
};
use crate::health::HealthReport;
use crate::oci_registry::{catalog_page, valid_repository_name};
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::{Secret, TenantRef};

/// The Entra ID scope whose tokens ACR's exchange accepts.
const AAD_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The scope a catalog listing needs.
const CATALOG_SCOPE: &str = "registry:catalog:*";
/// How long an ACR token whose expiry cannot be read is kept.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest accepted `catalogPageSize`.
const MAX_PAGE_SIZE: u32 = 1000;

/// Configuration of an Azure Container Registry integration. The service principal's client
/// secret is the secret behind the integration's AuthRef.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The registry's login server URL, such as `https://myregistry.azurecr.io`.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub login_server: String,
    /// The Entra ID (Azure AD) tenant: its id (a GUID) or a domain such as
    /// `contoso.onmicrosoft.com`.
    #[schemars(length(min = 1, max = 255), regex(pattern = ID_PATTERN))]
    pub tenant_id: String,
    /// The service principal's application (client) id.
    #[schemars(length(min = 1, max = 255), regex(pattern = ID_PATTERN))]
    pub client_id: String,
    /// The Entra ID authority, `https://login.microsoftonline.com` by default (another for
    /// national clouds).
    #[serde(default = "default_authority_url")]
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub authority_url: String,
    /// Repositories asked for per `/v2/_catalog` page (`n`).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub catalog_page_size: u32,
}

fn default_authority_url() -> String {
    "https://login.microsoftonline.com".to_owned()
}

const fn default_page_size() -> u32 {
    100
}

/// A tenant id or client id: goes into a URL path and a form, so letters, digits, `.` and `-`.
/// What [`valid_id`] accepts besides the length, as the schema's `pattern`: letters, digits,
/// `.` and `-`, but not `.` or `..` alone.
pub const ID_PATTERN: &str = r"^([A-Za-z0-9-]|\.[A-Za-z0-9-]|\.\.[A-Za-z0-9.-])[A-Za-z0-9.-]*$";

fn valid_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && id != "."
        && id != ".."
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "acr";
    const DISPLAY_NAME: &'static str = "Azure Container Registry";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        config::check_http_url("loginServer", &config.login_server)?;
        config::check_http_url("authorityUrl", &config.authority_url)?;
        if !valid_id(&config.tenant_id) {
            return Err(ConfigError::invalid(
                "config.tenantId",
                "must be a tenant id (GUID) or domain",
            ));
        }
        if !valid_id(&config.client_id) {
            return Err(ConfigError::invalid(
                "config.clientId",
                "must be an application (client) id",
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&config.catalog_page_size) {
            return Err(ConfigError::invalid(
                "config.catalogPageSize",
                format!("1 to {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(())
    }

    fn connect(
        config: Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        let login = config.login_server.trim_end_matches('/').to_owned();
        let service = url::Url::parse(&login)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    u.port()
                        .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
                })
            })
            .ok_or_else(|| ConfigError::invalid("config.loginServer", "must have a host"))?;
        Ok(Arc::new(AcrConnector {
            authority: config.authority_url.trim_end_matches('/').to_owned(),
            login,
            service,
            config,
            credential: spec.credential(),
            key: TokenKey::new(spec, "aad"),
            env: env.clone(),
        }))
    }
}

#[derive(Deserialize)]
struct AadAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct RefreshAnswer {
    refresh_token: String,
}

#[derive(Deserialize)]
struct AccessAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct JwtExpiry {
    exp: Option<i64>,
}

/// The `exp` of a JWT, read without verifying it (it is the issuer's own token, used only to
/// know when to ask for another).
pub(crate) fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: JwtExpiry = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(claims.exp?, 0)
}

/// A minted ACR token, kept until its own `exp` (or a minute when unreadable).
fn minted_jwt(token: String) -> Minted {
    let now = Utc::now();
    match jwt_expiry(&token) {
        Some(exp) => Minted::new(Secret::new(token), now, exp),
        None => Minted::lasting(Secret::new(token), now, UNKNOWN_LIFETIME),
    }
}

// === impl AcrConnector ===

/// The built connector of one registry.
pub struct AcrConnector {
    /// The authority without a trailing slash.
    authority: String,
    /// The login server URL without a trailing slash.
    login: String,
    /// The login server's host (with its port, if any): the exchange's `service`.
    service: String,
    config: Config,
    credential: Option<TenantRef>,
    /// The Entra ID token's key; the others are derived from it.
    key: TokenKey,
    env: ConnectorEnv,
}

impl AcrConnector {
    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
        what: &str,
    ) -> Result<T, Error> {
        let response = self
            .env
            .outbound
            .send(self.env.outbound.request(Method::POST, url)?.form(form))
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(token_error(status, what));
        }
        outbound::read_json(response, self.env.outbound.max_response_bytes(), what).await
    }

    /// Step 1: the Entra ID token, by client credentials.
    async fn aad_token(&self) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.key, || async {
                let credential = self.credential.as_ref().ok_or(Error::NoCredentials(
                    "an ACR integration needs an authRef to the service principal's client secret",
                ))?;
                let url = format!(
                    "{}/{}/oauth2/v2.0/token",
                    self.authority, self.config.tenant_id
                );
                let response = self
                    .env
                    .send_with_secret(credential, |secret| {
                        Ok(self.env.outbound.request(Method::POST, &url)?.form(&[
                            ("grant_type", "client_credentials"),
                            ("client_id", self.config.client_id.as_str()),
                            ("client_secret", secret.expose()),
                            ("scope", AAD_SCOPE),
                        ]))
                    })
                    .await?;
                let status = response.status();
                if !status.is_success() {
                    return Err(token_error(status, "Entra ID token"));
                }
                let answer: AadAnswer = outbound::read_json(
                    response,
                    self.env.outbound.max_response_bytes(),
                    "Entra ID token",
                )
                .await?;
                let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60));
                Ok(Minted::lasting(
                    Secret::new(answer.access_token),
                    Utc::now(),
                    lifetime,
                ))
            })
            .await
    }

    /// Step 2: the ACR refresh token.
    async fn refresh_token(&self) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.key.with_purpose("refresh"), || async {
                let aad = self.aad_token().await?;
                let url = format!("{}/oauth2/exchange", self.login);
                let answer: RefreshAnswer = self
                    .post_form(
                        &url,
                        &[
                            ("grant_type", "access_token"),
                            ("service", self.service.as_str()),
                            ("tenant", self.config.tenant_id.as_str()),
                            ("access_token", aad.expose()),
                        ],
                        "ACR refresh token",
                    )
                    .await?;
                Ok(minted_jwt(answer.refresh_token))
            })
            .await
    }

    /// Step 3: an ACR access token for `scope`.
    async fn access_token(&self, scope: &str) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.key.with_purpose(format!("scope {scope}")), || async {
                let refresh = self.refresh_token().await?;
                let url = format!("{}/oauth2/token", self.login);
                let answer: AccessAnswer = self
                    .post_form(
                        &url,
                        &[
                            ("grant_type", "refresh_token"),
                            ("service", self.service.as_str()),
                            ("scope", scope),
                            ("refresh_token", refresh.expose()),
                        ],
                        "ACR access token",
                    )
                    .await?;
                Ok(minted_jwt(answer.access_token))
            })
            .await
    }

    /// Forgets every token of the chain (one was refused).
    async fn forget_tokens(&self, scope: &str) {
        for key in [
            self.key.with_purpose(format!("scope {scope}")),
            self.key.with_purpose("refresh"),
            self.key.clone(),
        ] {
            self.env.cloud_tokens.invalidate(&key).await;
        }
    }

    /// GETs `url` with an access token for `scope`; a refused token chain is minted anew once.
    async fn get(&self, url: &str, scope: &str) -> Result<reqwest::Response, Error> {
        for attempt in 0..2 {
            let token = self.access_token(scope).await?;
            let response = self
                .env
                .outbound
                .send(
                    self.env
                        .outbound
                        .request(Method::GET, url)?
                        .bearer_auth(token.expose()),
                )
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget_tokens(scope).await;
                continue;
            }
            return Ok(response);
        }
        Err(Error::Unauthorized)
    }

    async fn catalog(&self, n: u32, last: Option<&str>) -> Result<ResourcePage, Error> {
        let mut url = url::Url::parse(&format!("{}/v2/_catalog", self.login))
            .map_err(|_| Error::BadResponse("login server URL".into()))?;
        url.query_pairs_mut().append_pair("n", &n.to_string());
        if let Some(last) = last {
            url.query_pairs_mut().append_pair("last", last);
        }
        let response = self.get(url.as_str(), CATALOG_SCOPE).await?;
        catalog_page(response, self.env.outbound.max_response_bytes()).await
    }
}

/// A token endpoint's refusal: 400 and 401 both mean the credentials or grant were refused
/// (Entra ID answers `invalid_client` with 401, ACR an unknown grant with 400 or 401).
fn token_error(status: StatusCode, what: &str) -> Error {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Error::Unauthorized,
        s => outbound::status_error(s, what),
    }
}

#[async_trait::async_trait]
impl Connector for AcrConnector {
    async fn check_health(&self) -> HealthReport {
        match self.catalog(1, None).await {
            Ok(_) => HealthReport::healthy(),
            Err(e) => e.to_report(),
        }
    }

    /// As a check, with the whole token chain minted anew: verification proves the client
    /// secret, not tokens cached from it.
    async fn test_connection(&self) -> HealthReport {
        self.forget_tokens(CATALOG_SCOPE).await;
        self.check_health().await
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        if let Some(last) = cursor
            && !valid_repository_name(last)
        {
            return Err(Error::InvalidCursor);
        }
        self.catalog(self.config.catalog_page_size, cursor).await
    }
}
