//! Any registry speaking the OCI Distribution (`/v2/`) API: Docker Hub, GHCR, ECR, GCR, ACR,
//! Quay, Harbor's registry, or a self-hosted `registry`.
//!
//! Health pings `GET /v2/`. A 401 carries a `WWW-Authenticate` challenge: `Basic` is answered
//! with the username and the AuthRef's password; `Bearer realm=…,service=…,scope=…` sends us
//! to the realm for a token (with basic credentials when we have them, anonymously otherwise),
//! which then goes on the request. That token is kept in the environment's
//! [`TokenCache`](crate::outbound::TokenCache) for its `expires_in` (less a margin), keyed by
//! tenant, integration, credential and purpose, so the next check sends it straight away: one
//! request instead of three. A registry that refuses a kept token (401) is answered from that
//! same 401's challenge, with a fresh token. Repositories come from `GET /v2/_catalog?n=&last=`,
//! following its `Link` header; the cursor is the `last` repository name.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::HealthReport;
use crate::outbound::{self, TokenKey};
use crate::provider::{Capability, Provider};
use crate::secrets::Secret;
use crate::secrets::TenantRef;

/// Largest accepted `catalogPageSize`.
const MAX_PAGE_SIZE: u32 = 1000;
/// The scope a catalog listing needs on token-auth registries.
const CATALOG_SCOPE: &str = "registry:catalog:*";

/// Configuration of an OCI registry integration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The registry URL, such as `https://ghcr.io`.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub base_url: String,
    /// The user name for basic or token authentication; the password comes from the AuthRef.
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::config::BASIC_USER_PATTERN))]
    pub username: Option<String>,
    /// Repositories asked for per `/v2/_catalog` page (`n`); registries may cap it lower.
    #[serde(default = "default_catalog_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub catalog_page_size: u32,
}

const fn default_catalog_page_size() -> u32 {
    100
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "oci_registry";
    const DISPLAY_NAME: &'static str = "OCI registry";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        config::check_http_url("baseUrl", &config.base_url)?;
        config::check_basic_user("username", config.username.as_deref())?;
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
        let base = config.base_url.trim_end_matches('/').to_owned();
        let credential = spec.credential();
        let key = |scope: &str| {
            TokenKey::new(
                spec.tenant.as_str(),
                spec.id.as_str(),
                credential.as_ref(),
                config.username.as_deref(),
                format!("{base}|{scope}"),
            )
        };
        Ok(Arc::new(OciConnector {
            ping_key: key(""),
            catalog_key: key(CATALOG_SCOPE),
            base,
            page_size: config.catalog_page_size,
            username: config.username,
            credential,
            env: env.clone(),
        }))
    }
}

// === challenges ===

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = std::collections::HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        params.insert(name.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// Lifetime of a registry token whose answer gives no `expires_in` (the Docker token
/// specification's default).
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 60;

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    /// Seconds the token lives.
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

// === impl OciConnector ===

/// The built connector of one registry.
pub struct OciConnector {
    /// The registry URL without a trailing slash.
    base: String,
    page_size: u32,
    username: Option<String>,
    credential: Option<TenantRef>,
    env: ConnectorEnv,
    /// Where the bearer token of the `/v2/` ping is kept.
    ping_key: TokenKey,
    /// Where the bearer token of the catalog listing is kept.
    catalog_key: TokenKey,
}

impl OciConnector {
    fn request(&self, url: &str) -> Result<reqwest::RequestBuilder, Error> {
        self.env.outbound.request(Method::GET, url)
    }

    fn credentials(&self) -> Option<(&str, &TenantRef)> {
        match (&self.username, &self.credential) {
            (Some(u), Some(r)) => Some((u.as_str(), r)),
            // A token-only registry (GHCR with a PAT) accepts any user name.
            (None, Some(r)) => Some(("token", r)),
            _ => None,
        }
    }

    /// GETs `url`, with the kept bearer token when there is one, answering the registry's
    /// challenge with the integration's credentials otherwise. `scope` is the token scope to
    /// ask for when the challenge names none.
    async fn get(&self, url: &str, scope: Option<&str>) -> Result<reqwest::Response, Error> {
        let key = if scope.is_some() {
            &self.catalog_key
        } else {
            &self.ping_key
        };
        let request = match self.env.tokens.get(key) {
            Some(token) => self.request(url)?.bearer_auth(token.expose()),
            None => self.request(url)?,
        };
        let response = self.env.outbound.send(request).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        // A kept token the registry no longer takes is forgotten; this 401 carries the
        // challenge to get a fresh one.
        self.env.tokens.remove(key);
        // Boxed: the challenge path is rare and its future is as large again as the plain
        // request's, which every health check would otherwise allocate and copy.
        Box::pin(self.answer_challenge(url, scope, key, &response)).await
    }

    /// Repeats a GET that got 401, with the credentials the challenge asks for, keeping a
    /// bearer token under `key`.
    async fn answer_challenge(
        &self,
        url: &str,
        scope: Option<&str>,
        key: &TokenKey,
        response: &reqwest::Response,
    ) -> Result<reqwest::Response, Error> {
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| Error::BadResponse("401 without a Basic or Bearer challenge".into()))?;
        match challenge {
            Challenge::Basic => {
                let (user, auth_ref) = self.credentials().ok_or(Error::Unauthorized)?;
                self.env
                    .send_with_secret(auth_ref, |password| {
                        Ok(self.request(url)?.basic_auth(user, Some(password.expose())))
                    })
                    .await
            }
            Challenge::Bearer {
                realm,
                service,
                scope: challenged,
            } => {
                let scope = challenged.as_deref().or(scope);
                let (token, lifetime) = self.token(&realm, service.as_deref(), scope).await?;
                let response = self
                    .env
                    .outbound
                    .send(self.request(url)?.bearer_auth(token.expose()))
                    .await?;
                if response.status() != StatusCode::UNAUTHORIZED {
                    self.env.tokens.insert(key.clone(), token, lifetime);
                }
                Ok(response)
            }
        }
    }

    /// A bearer token from the challenge's realm (through the same SSRF guard), and how long
    /// it lives.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(Secret, std::time::Duration), Error> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if let Some(s) = scope {
            query.push(("scope", s));
        }
        let make =
            || -> Result<reqwest::RequestBuilder, Error> { Ok(self.request(realm)?.query(&query)) };
        let response = match self.credentials() {
            Some((user, auth_ref)) => {
                self.env
                    .send_with_secret(auth_ref, |password| {
                        Ok(make()?.basic_auth(user, Some(password.expose())))
                    })
                    .await?
            }
            None => self.env.outbound.send(make()?).await?,
        };
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
        let lifetime = std::time::Duration::from_secs(
            answer.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS),
        );
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| (Secret::new(t), lifetime))
            .ok_or_else(|| Error::BadResponse("registry token: no token in the answer".into()))
    }

    async fn check(&self) -> Result<HealthReport, Error> {
        let response = self.get(&format!("{}/v2/", self.base), None).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "/v2/"));
        }
        Ok(self
            .env
            .outbound
            .judge_certificate(HealthReport::healthy(), &response))
    }
}

/// Whether `name` is a repository name as the distribution specification writes them (a
/// cursor is one, so nothing else reaches the registry's query).
pub(crate) fn valid_repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
        })
}

#[async_trait::async_trait]
impl Connector for OciConnector {
    async fn check_health(&self) -> HealthReport {
        self.check().await.unwrap_or_else(|e| e.to_report())
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let mut url = url::Url::parse(&format!("{}/v2/_catalog", self.base))
            .map_err(|_| Error::BadResponse("base URL".into()))?;
        url.query_pairs_mut()
            .append_pair("n", &self.page_size.to_string());
        if let Some(last) = cursor {
            if !valid_repository_name(last) {
                return Err(Error::InvalidCursor);
            }
            url.query_pairs_mut().append_pair("last", last);
        }
        let response = self.get(url.as_str(), Some(CATALOG_SCOPE)).await?;
        catalog_page(response, self.env.outbound.max_response_bytes()).await
    }
}

/// One page of a registry's `/v2/_catalog` answer: its repositories, and the last of them as
/// the cursor when a `Link: rel="next"` says there are more.
pub(crate) async fn catalog_page(
    response: reqwest::Response,
    max_bytes: u64,
) -> Result<ResourcePage, Error> {
    let status = response.status();
    if !status.is_success() {
        return Err(outbound::status_error(status, "catalog"));
    }
    let has_next = outbound::link_next(response.headers()).is_some();
    let catalog: Catalog = outbound::read_json(response, max_bytes, "catalog").await?;
    let next_cursor = if has_next {
        catalog.repositories.last().cloned()
    } else {
        None
    };
    Ok(ResourcePage {
        resources: catalog
            .repositories
            .into_iter()
            .map(|name| Resource {
                id: name.clone(),
                name,
                kind: "image_repository",
                url: None,
            })
            .collect(),
        next_cursor,
    })
}
