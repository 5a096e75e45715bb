//! Google Artifact Registry (which also serves `gcr.io` repositories), with a service account
//! key: the JSON key file Google issues is the secret behind the integration's AuthRef.
//!
//! Google's documented server-to-server exchange (OAuth 2.0 JWT bearer grant, RFC 7523): an
//! RS256 assertion signed with the key's private key (`iss` the service account, `scope`
//! read-only cloud platform, `aud` the token URI, one hour) is posted to the key's
//! `token_uri` for an access token, cached per tenant and integration until five minutes
//! before its `expires_in`. The access token is what a registry client sends as the password
//! of the user `oauth2accesstoken`.
//!
//! Repositories come from the Artifact Registry REST API,
//! `GET /v1/projects/{project}/locations/{location}/repositories`, following `nextPageToken`
//! (Docker-format repositories only); with `pageSize=1` it is also the health probe, so a
//! check with the token cached is one request.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tokens::{Minted, TokenKey};
use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::HealthReport;
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::{Secret, TenantRef};

/// The OAuth scope asked for: read-only, enough to list repositories and pull images.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// The JWT bearer grant type (RFC 7523).
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when the key names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The assertion's lifetime (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Largest accepted `pageSize` (the API's own limit).
const MAX_PAGE_SIZE: u32 = 1000;
/// Longest `nextPageToken` accepted back as a cursor.
const MAX_CURSOR_LEN: usize = 4096;

/// Configuration of a Google Artifact Registry integration. The service account key (JSON)
/// is the secret behind the integration's AuthRef.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The Google Cloud project id.
    #[schemars(regex(pattern = SEGMENT_PATTERN))]
    pub project_id: String,
    /// The repositories' location, such as `europe-west1` or `us` (`gcr.io` repositories
    /// live in `us`, `europe` and `asia`).
    #[schemars(regex(pattern = SEGMENT_PATTERN))]
    pub location: String,
    /// The Artifact Registry API root, `https://artifactregistry.googleapis.com` by default.
    #[serde(default = "default_api_base_url")]
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub api_base_url: String,
    /// The token endpoint; the key's own `token_uri` when unset.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub token_uri: Option<String>,
    /// Repositories asked for per page (`pageSize`).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: u32,
}

fn default_api_base_url() -> String {
    "https://artifactregistry.googleapis.com".to_owned()
}

const fn default_page_size() -> u32 {
    100
}

/// A project id or location: lowercase letters, digits and `-` (Google's rules, and what may
/// go into a URL path unescaped).
/// What [`valid_segment`] accepts, as the schema's `pattern`.
pub const SEGMENT_PATTERN: &str = "^[a-z0-9:][a-z0-9:.-]{0,62}$";

fn valid_segment(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | ':' | '.'))
        && !s.starts_with(['-', '.'])
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "gar";
    const DISPLAY_NAME: &'static str = "Google Artifact Registry";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        if !valid_segment(&config.project_id) {
            return Err(ConfigError::invalid(
                "config.projectId",
                "must be a Google Cloud project id",
            ));
        }
        if !valid_segment(&config.location) {
            return Err(ConfigError::invalid(
                "config.location",
                "must be a location such as europe-west1 or us",
            ));
        }
        config::check_http_url("apiBaseUrl", &config.api_base_url)?;
        if let Some(uri) = &config.token_uri {
            config::check_http_url("tokenUri", uri)?;
        }
        if !(1..=MAX_PAGE_SIZE).contains(&config.page_size) {
            return Err(ConfigError::invalid(
                "config.pageSize",
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
        Ok(Arc::new(GarConnector {
            api: config.api_base_url.trim_end_matches('/').to_owned(),
            config,
            credential: spec.credential(),
            token_key: TokenKey::new(spec, "access"),
            env: env.clone(),
        }))
    }
}

/// The fields of a service account key the exchange needs.
#[derive(Deserialize)]
pub(crate) struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryList {
    #[serde(default)]
    repositories: Vec<Repository>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    /// `projects/{project}/locations/{location}/repositories/{id}`.
    name: String,
    format: Option<String>,
}

/// Reads a service account key.
///
/// # Errors
/// [`Error::BadCredential`] when it is not a service account key (never quoting it).
pub(crate) fn parse_key(secret: &Secret) -> Result<ServiceAccountKey, Error> {
    serde_json::from_str(secret.expose()).map_err(|_| {
        Error::BadCredential(
            "the secret is not a service account key (JSON with client_email and private_key)"
                .into(),
        )
    })
}

/// The signed assertion of the JWT bearer grant.
///
/// # Errors
/// [`Error::BadCredential`] for a private key that is not an RSA PEM.
pub(crate) fn assertion(
    key: &ServiceAccountKey,
    audience: &str,
    now: chrono::DateTime<Utc>,
) -> Result<String, Error> {
    let signing =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
            Error::BadCredential("the service account's private key is not an RSA PEM".into())
        })?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key.private_key_id.clone();
    let iat = now.timestamp();
    let claims = Claims {
        iss: &key.client_email,
        scope: SCOPE,
        aud: audience,
        iat,
        exp: iat + ASSERTION_LIFETIME_SECS,
    };
    jsonwebtoken::encode(&header, &claims, &signing)
        .map_err(|_| Error::BadCredential("cannot sign the assertion".into()))
}

fn valid_cursor(cursor: &str) -> bool {
    !cursor.is_empty()
        && cursor.len() <= MAX_CURSOR_LEN
        && cursor.chars().all(|c| c.is_ascii_graphic())
}

// === impl GarConnector ===

/// The built connector of one project and location.
pub struct GarConnector {
    /// The API root without a trailing slash.
    api: String,
    config: Config,
    credential: Option<TenantRef>,
    token_key: TokenKey,
    env: ConnectorEnv,
}

impl GarConnector {
    /// The access token, from the cache while fresh.
    async fn access_token(&self) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.token_key, || self.exchange())
            .await
    }

    /// The JWT bearer grant at the token URI.
    async fn exchange(&self) -> Result<Minted, Error> {
        let credential = self.credential.as_ref().ok_or(Error::NoCredentials(
            "an Artifact Registry integration needs an authRef to a service account key",
        ))?;
        // Where the assertion goes is read from the key (or the configuration): the URL is
        // checked as a configured one would be, and then by the secret's host binding and
        // the SSRF guard as every request is.
        let resolved = self.env.secrets.resolve(credential).await?;
        let key = parse_key(resolved.secret());
        if key.is_err() {
            // A key that does not parse may be fixed in the store: read it again next time.
            self.env.secrets.invalidate(credential).await;
        }
        let token_uri = match &self.config.token_uri {
            Some(uri) => uri.clone(),
            None => key?
                .token_uri
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
        };
        config::check_http_url("tokenUri", &token_uri).map_err(|_| {
            Error::BadCredential("the key's token_uri is not an acceptable URL".into())
        })?;
        let response = self
            .env
            .send_with_secret(credential, |secret| {
                let key = parse_key(secret)?;
                let jwt = assertion(&key, &token_uri, Utc::now())?;
                Ok(self
                    .env
                    .outbound
                    .request(Method::POST, &token_uri)?
                    .form(&[("grant_type", GRANT_TYPE), ("assertion", jwt.as_str())]))
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            // Google answers a refused assertion (`invalid_grant`) with 400.
            return Err(match status {
                StatusCode::BAD_REQUEST => Error::Unauthorized,
                s => outbound::status_error(s, "access token"),
            });
        }
        let answer: TokenAnswer = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "access token",
        )
        .await?;
        if answer.access_token.is_empty() {
            return Err(Error::BadResponse("access token: empty".into()));
        }
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        Ok(Minted::lasting(
            Secret::new(answer.access_token),
            Utc::now(),
            lifetime,
        ))
    }

    async fn repositories(
        &self,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<RepositoryList, Error> {
        let mut url = url::Url::parse(&format!(
            "{}/v1/projects/{}/locations/{}/repositories",
            self.api, self.config.project_id, self.config.location
        ))
        .map_err(|_| Error::BadResponse("API base URL".into()))?;
        url.query_pairs_mut()
            .append_pair("pageSize", &page_size.to_string());
        if let Some(t) = page_token {
            url.query_pairs_mut().append_pair("pageToken", t);
        }
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let response = self
                .env
                .outbound
                .send(
                    self.env
                        .outbound
                        .request(Method::GET, url.as_str())?
                        .bearer_auth(token.expose()),
                )
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.env.cloud_tokens.invalidate(&self.token_key).await;
                continue;
            }
            if !status.is_success() {
                return Err(outbound::status_error(status, "repositories"));
            }
            return outbound::read_json(
                response,
                self.env.outbound.max_response_bytes(),
                "repositories",
            )
            .await;
        }
        Err(Error::Unauthorized)
    }
}

#[async_trait::async_trait]
impl Connector for GarConnector {
    async fn check_health(&self) -> HealthReport {
        match self.repositories(1, None).await {
            Ok(_) => HealthReport::healthy(),
            Err(e) => e.to_report(),
        }
    }

    /// As a check, with the access token minted anew: verification proves the key, not a
    /// token cached from it.
    async fn test_connection(&self) -> HealthReport {
        self.env.cloud_tokens.invalidate(&self.token_key).await;
        self.check_health().await
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        if let Some(c) = cursor
            && !valid_cursor(c)
        {
            return Err(Error::InvalidCursor);
        }
        let list = self.repositories(self.config.page_size, cursor).await?;
        Ok(ResourcePage {
            resources: list
                .repositories
                .into_iter()
                .filter(|r| r.format.as_deref().is_none_or(|f| f == "DOCKER"))
                .map(|r| Resource {
                    name: r.name.rsplit('/').next().unwrap_or(&r.name).to_owned(),
                    id: r.name,
                    kind: "image_repository",
                    url: None,
                })
                .collect(),
            next_cursor: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}
