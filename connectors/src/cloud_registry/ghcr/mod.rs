//! GitHub Container Registry (GHCR, or a GitHub Enterprise Server's container registry), with
//! a GitHub token (a personal access token with `read:packages`, or a fine-grained one).
//!
//! Health reads `GET /rate_limit` of the GitHub API with the token (it costs no quota) for
//! GitHub's `GitHub-Authentication-Token-Expiration` header: a token expiring within
//! `expiryWarningDays` is `degraded` (`credential_expiring`, with the date). Then it trades the
//! token at the registry's `GET /token?service=ghcr.io` (basic auth, the token as the
//! password) for a registry token, cached per tenant and integration for its `expires_in`
//! (the token specification's default minute when absent), and pings `GET /v2/` with it: the
//! exchange and the call a pull needs. With the registry token cached, a check is two
//! requests. GHCR serves no `/v2/_catalog`, so
//! repositories come from the GitHub packages API, `GET /orgs/{org}/packages` or
//! `GET /user/packages` with `package_type=container`, following `Link`.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use super::tokens::{Minted, TokenKey};
use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::{HealthReport, Reason};
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::{Secret, TenantRef};

/// GitHub's REST API version header value.
const API_VERSION: &str = "2022-11-28";
/// Packages per page (GitHub's maximum).
const PER_PAGE: u32 = 100;
/// A registry token's lifetime when the answer does not say (the token specification's).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Configuration of a GHCR integration. The GitHub token is the secret behind the
/// integration's AuthRef.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The organization whose container packages are listed; the token's own user's when
    /// unset.
    pub organization: Option<String>,
    /// The GitHub user name sent with the token to the registry's token endpoint.
    #[serde(default = "default_username")]
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::config::BASIC_USER_PATTERN))]
    pub username: String,
    /// The registry, `https://ghcr.io` by default.
    #[serde(default = "default_registry_url")]
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub registry_url: String,
    /// The registry's `service` name in the token exchange, `ghcr.io` by default.
    #[serde(default = "default_service")]
    pub service: String,
    /// The GitHub REST API root; `https://<host>/api/v3` for GitHub Enterprise Server.
    #[serde(default = "default_api_base_url")]
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub api_base_url: String,
    /// Days before the token's expiry (as GitHub reports it) at which health turns
    /// `degraded`.
    #[serde(default = "default_expiry_warning_days")]
    #[schemars(range(max = 365))]
    pub expiry_warning_days: u32,
}

const fn default_expiry_warning_days() -> u32 {
    14
}

/// Longest accepted `expiryWarningDays`.
const MAX_EXPIRY_WARNING_DAYS: u32 = 365;
/// GitHub's header with a token's expiry, on every API answer to a token that has one.
const EXPIRATION_HEADER: &str = "github-authentication-token-expiration";

fn default_username() -> String {
    "token".to_owned()
}
fn default_registry_url() -> String {
    "https://ghcr.io".to_owned()
}
fn default_service() -> String {
    "ghcr.io".to_owned()
}
fn default_api_base_url() -> String {
    crate::github_app::DEFAULT_API_BASE_URL.to_owned()
}

fn valid_github_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "ghcr";
    const DISPLAY_NAME: &'static str = "GitHub Container Registry";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        config::check_http_url("registryUrl", &config.registry_url)?;
        config::check_http_url("apiBaseUrl", &config.api_base_url)?;
        config::check_basic_user("username", Some(&config.username))?;
        if config.expiry_warning_days > MAX_EXPIRY_WARNING_DAYS {
            return Err(ConfigError::invalid(
                "config.expiryWarningDays",
                format!("at most {MAX_EXPIRY_WARNING_DAYS}"),
            ));
        }
        if let Some(org) = &config.organization
            && !valid_github_name(org)
        {
            return Err(ConfigError::invalid(
                "config.organization",
                "must be a GitHub organization name",
            ));
        }
        if config.service.is_empty()
            || config.service.len() > 255
            || !config
                .service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(ConfigError::invalid(
                "config.service",
                "must be a host name such as ghcr.io",
            ));
        }
        Ok(())
    }

    fn connect(
        config: Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        Ok(Arc::new(GhcrConnector {
            registry: config.registry_url.trim_end_matches('/').to_owned(),
            api: config.api_base_url.trim_end_matches('/').to_owned(),
            config,
            credential: spec.credential(),
            token_key: TokenKey::new(spec, "registry"),
            env: env.clone(),
        }))
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Package {
    id: u64,
    name: String,
    owner: Option<Owner>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

/// GitHub's expiration header: `2026-12-20 10:00:00 UTC` (older answers: `… +0000`).
pub(crate) fn parse_expiration(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Some(naive) = value.strip_suffix(" UTC") {
        return chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|t| t.and_utc());
    }
    DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S %z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Healthy, or `degraded` when the token expires within `warning_days` of `now`; the expiry
/// travels on the report either way.
pub(crate) fn judge_expiry(
    expiry: Option<DateTime<Utc>>,
    warning_days: u32,
    now: DateTime<Utc>,
) -> HealthReport {
    let Some(at) = expiry else {
        return HealthReport::healthy();
    };
    let report = if at - now <= chrono::Duration::days(i64::from(warning_days)) {
        HealthReport::degraded(
            Reason::CredentialExpiring,
            format!(
                "the GitHub token expires on {}, in {} days",
                at.format("%Y-%m-%d %H:%M UTC"),
                (at - now).num_days().max(0)
            ),
        )
    } else {
        HealthReport::healthy()
    };
    report.with_credential_expiry(at)
}

// === impl GhcrConnector ===

/// The built connector of one GHCR integration.
pub struct GhcrConnector {
    /// The registry URL without a trailing slash.
    registry: String,
    /// The API root without a trailing slash.
    api: String,
    config: Config,
    credential: Option<TenantRef>,
    token_key: TokenKey,
    env: ConnectorEnv,
}

impl GhcrConnector {
    fn credential(&self) -> Result<&TenantRef, Error> {
        self.credential.as_ref().ok_or(Error::NoCredentials(
            "a GHCR integration needs an authRef to a GitHub token",
        ))
    }

    /// The registry token, from the cache while fresh.
    async fn registry_token(&self) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.token_key, || self.exchange())
            .await
    }

    /// Trades the GitHub token for a registry token.
    async fn exchange(&self) -> Result<Minted, Error> {
        let url = format!("{}/token", self.registry);
        let response = self
            .env
            .send_with_secret(self.credential()?, |token| {
                Ok(self
                    .env
                    .outbound
                    .request(Method::GET, &url)?
                    .query(&[("service", self.config.service.as_str())])
                    .basic_auth(&self.config.username, Some(token.expose())))
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "registry token"));
        }
        let answer: TokenAnswer = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "registry token",
        )
        .await?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::BadResponse("registry token: no token in the answer".into()))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Minted::lasting(Secret::new(token), Utc::now(), lifetime))
    }

    /// `GET /v2/` with the registry token; a refused token is replaced once.
    async fn ping(&self) -> Result<(), Error> {
        let url = format!("{}/v2/", self.registry);
        for attempt in 0..2 {
            let token = self.registry_token().await?;
            let response = self
                .env
                .outbound
                .send(
                    self.env
                        .outbound
                        .request(Method::GET, &url)?
                        .bearer_auth(token.expose()),
                )
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.env.cloud_tokens.invalidate(&self.token_key).await;
                continue;
            }
            if !status.is_success() {
                return Err(outbound::status_error(status, "/v2/"));
            }
            return Ok(());
        }
        Err(Error::Unauthorized)
    }

    /// The token's expiry as GitHub reports it on `GET /rate_limit` (none for a token
    /// without one, or where the API has no rate limit to report).
    async fn token_expiry(&self) -> Result<Option<DateTime<Utc>>, Error> {
        let url = format!("{}/rate_limit", self.api);
        let response = self
            .env
            .send_with_secret(self.credential()?, |token| {
                Ok(self
                    .env
                    .outbound
                    .request(Method::GET, &url)?
                    .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", API_VERSION)
                    .bearer_auth(token.expose()))
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            // GitHub Enterprise Server with rate limiting off.
            return Ok(None);
        }
        if !status.is_success() {
            return Err(outbound::status_error(status, "rate limit"));
        }
        Ok(response
            .headers()
            .get(EXPIRATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_expiration))
    }

    async fn check(&self) -> Result<HealthReport, Error> {
        let expiry = self.token_expiry().await?;
        self.ping().await?;
        Ok(judge_expiry(
            expiry,
            self.config.expiry_warning_days,
            Utc::now(),
        ))
    }

    fn first_page(&self) -> String {
        match &self.config.organization {
            Some(org) => format!(
                "{}/orgs/{org}/packages?package_type=container&per_page={PER_PAGE}",
                self.api
            ),
            None => format!(
                "{}/user/packages?package_type=container&per_page={PER_PAGE}",
                self.api
            ),
        }
    }
}

#[async_trait::async_trait]
impl Connector for GhcrConnector {
    async fn check_health(&self) -> HealthReport {
        self.check().await.unwrap_or_else(|e| e.to_report())
    }

    /// As a check, with the registry token minted anew: verification proves the credential,
    /// not a token cached from it.
    async fn test_connection(&self) -> HealthReport {
        self.env.cloud_tokens.invalidate(&self.token_key).await;
        self.check_health().await
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let url = match cursor {
            None => self.first_page(),
            Some(c) => outbound::check_cursor_url(&self.api, c)?,
        };
        let response = self
            .env
            .send_with_secret(self.credential()?, |token| {
                Ok(self
                    .env
                    .outbound
                    .request(Method::GET, &url)?
                    .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", API_VERSION)
                    .bearer_auth(token.expose()))
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "container packages"));
        }
        let next_cursor = outbound::link_next(response.headers());
        let packages: Vec<Package> = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "container packages",
        )
        .await?;
        Ok(ResourcePage {
            resources: packages
                .into_iter()
                .map(|p| Resource {
                    id: p.id.to_string(),
                    name: match p.owner {
                        Some(o) => format!("{}/{}", o.login.to_ascii_lowercase(), p.name),
                        None => p.name,
                    },
                    kind: "image_repository",
                    url: p.html_url,
                })
                .collect(),
            next_cursor,
        })
    }
}
