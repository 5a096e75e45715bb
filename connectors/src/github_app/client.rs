//! The GitHub App client: app JWT, installation token cache, and the calls the connector makes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};

use super::config::Config;
use crate::connector::{ConnectorEnv, Error};
use crate::outbound;
use crate::secrets::Secret;
use crate::secrets::TenantRef;

/// GitHub's REST API version header value.
const API_VERSION: &str = "2022-11-28";
/// The media type GitHub recommends.
const ACCEPT: &str = "application/vnd.github+json, application/json;q=0.9";
/// The app JWT is backdated this much against clock drift (GitHub's advice).
const JWT_BACKDATE_SECS: i64 = 60;
/// The app JWT lives this long after its `iat` (GitHub's maximum is 10 minutes).
const JWT_LIFETIME_SECS: i64 = 9 * 60;
/// An installation token is replaced this long before its `expires_at`.
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Repositories per page (GitHub's maximum).
const PER_PAGE: u32 = 100;

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// Signs the RS256 app JWT: `iat` 60 s in the past, `exp` 9 min after that.
pub(crate) fn app_jwt(issuer: &str, key_pem: &Secret, now: DateTime<Utc>) -> Result<String, Error> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
        .map_err(|_| Error::BadCredential("the GitHub App private key is not an RSA PEM".into()))?;
    let iat = now.timestamp() - JWT_BACKDATE_SECS;
    let claims = Claims {
        iat,
        exp: iat + JWT_LIFETIME_SECS,
        iss: issuer.to_owned(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|_| Error::BadCredential("cannot sign the GitHub App JWT".into()))
}

/// A cached installation token.
struct InstallationToken {
    token: Secret,
    /// When to stop using it.
    refresh_at: DateTime<Utc>,
    /// The permissions the installation granted with it.
    permissions: std::collections::BTreeMap<String, String>,
}

/// What `POST /app/installations/{id}/access_tokens` answers.
#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: DateTime<Utc>,
    /// What the installation grants (`{"contents": "read", …}`).
    #[serde(default)]
    permissions: std::collections::BTreeMap<String, String>,
}

/// `GET /app/installations/{id}`, read to explain a refused token.
#[derive(Deserialize)]
struct Installation {
    suspended_at: Option<DateTime<Utc>>,
}

/// `GET /rate_limit`.
#[derive(Deserialize)]
pub(crate) struct RateLimit {
    pub resources: RateResources,
}

#[derive(Deserialize)]
pub(crate) struct RateResources {
    pub core: RateWindow,
}

#[derive(Deserialize)]
pub(crate) struct RateWindow {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds.
    pub reset: i64,
}

/// One repository of `GET /installation/repositories`.
#[derive(Deserialize)]
pub(crate) struct Repository {
    pub id: u64,
    pub full_name: String,
    pub html_url: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct RepositoryList {
    pub repositories: Vec<Repository>,
}

/// `POST /repos/{owner}/{repo}/hooks` answer.
#[derive(Deserialize)]
pub(crate) struct Hook {
    pub id: u64,
    #[serde(default)]
    pub events: Vec<String>,
    pub config: HookConfig,
}

#[derive(Deserialize)]
pub(crate) struct HookConfig {
    pub url: Option<String>,
}

/// The client of one installation.
pub(crate) struct GitHubClient {
    pub(crate) config: Config,
    /// The API root without a trailing slash.
    pub(crate) base: String,
    credential: Option<TenantRef>,
    pub(crate) env: ConnectorEnv,
    /// The installation token; the lock is held across a refresh, so only one is in flight.
    token: tokio::sync::Mutex<Option<InstallationToken>>,
}

impl GitHubClient {
    pub(crate) fn new(config: Config, credential: Option<TenantRef>, env: ConnectorEnv) -> Self {
        Self {
            base: config.api_base_url.trim_end_matches('/').to_owned(),
            config,
            credential,
            env,
            token: tokio::sync::Mutex::new(None),
        }
    }

    fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, Error> {
        Ok(self
            .env
            .outbound
            .request(method, url)?
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header("X-GitHub-Api-Version", API_VERSION))
    }

    /// The installation token, from the cache until [`TOKEN_REFRESH_MARGIN`] before it
    /// expires, else a new one.
    pub(crate) async fn installation_token(&self) -> Result<Secret, Error> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Utc::now() < t.refresh_at
        {
            return Ok(t.token.clone());
        }
        *cached = None;
        let fresh = self.exchange().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// The permissions the installation granted with the current token.
    pub(crate) async fn granted_permissions(
        &self,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.token
            .lock()
            .await
            .as_ref()
            .map(|t| t.permissions.clone())
    }

    async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    /// Trades an app JWT for an installation token.
    async fn exchange(&self) -> Result<InstallationToken, Error> {
        let url = format!(
            "{}/app/installations/{}/access_tokens",
            self.base, self.config.installation_id
        );
        let issuer = self.config.issuer();
        let credential = self.credential.as_ref().ok_or(Error::NoCredentials(
            "a GitHub App integration needs an authRef to the App's private key",
        ))?;
        let response = self
            .env
            .send_with_secret(credential, |key| {
                let jwt = app_jwt(&issuer, key, Utc::now())?;
                Ok(self.request(Method::POST, &url)?.bearer_auth(jwt))
            })
            .await;
        if matches!(response, Err(Error::BadCredential(_))) {
            // A key that does not parse may be fixed in the store: read it again next time.
            self.env.secrets.invalidate(credential).await;
        }
        let response = response?;
        let status = response.status();
        if status == StatusCode::FORBIDDEN
            && let Some(since) = self.suspended_since(credential).await
        {
            return Err(Error::Suspended(format!(
                "the GitHub App installation was suspended on {}",
                since.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        if !status.is_success() {
            return Err(outbound::status_error(status, "installation access token"));
        }
        let body: AccessToken = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "installation access token",
        )
        .await?;
        if body.token.is_empty() {
            return Err(Error::BadResponse(
                "installation access token: empty".into(),
            ));
        }
        tracing::debug!(
            message = "GitHub installation token issued.",
            installation = self.config.installation_id,
            expires_at = %body.expires_at,
        );
        let margin = chrono::Duration::from_std(TOKEN_REFRESH_MARGIN).unwrap_or_default();
        Ok(InstallationToken {
            token: Secret::new(body.token),
            refresh_at: body.expires_at - margin,
            permissions: body.permissions,
        })
    }

    /// When the installation was suspended, if it was: read only after a refused token, to
    /// say why. `None` when it is not suspended or cannot be read.
    async fn suspended_since(&self, credential: &TenantRef) -> Option<DateTime<Utc>> {
        let url = format!(
            "{}/app/installations/{}",
            self.base, self.config.installation_id
        );
        let issuer = self.config.issuer();
        let response = self
            .env
            .send_with_secret(credential, |key| {
                let jwt = app_jwt(&issuer, key, Utc::now())?;
                Ok(self.request(Method::GET, &url)?.bearer_auth(jwt))
            })
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let installation: Installation = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "installation",
        )
        .await
        .ok()?;
        installation.suspended_at
    }

    /// Sends a request with the installation token; on a 401 the token is replaced and the
    /// request sent once more.
    pub(crate) async fn send<F>(&self, make: F) -> Result<reqwest::Response, Error>
    where
        F: Fn() -> Result<RequestBuilder, Error>,
    {
        let token = self.installation_token().await?;
        let response = self
            .env
            .outbound
            .send(make()?.bearer_auth(token.expose()))
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.drop_token().await;
        let token = self.installation_token().await?;
        self.env
            .outbound
            .send(make()?.bearer_auth(token.expose()))
            .await
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<(T, reqwest::header::HeaderMap), Error> {
        let response = self.send(|| self.request(Method::GET, url)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, what));
        }
        let headers = response.headers().clone();
        let body =
            outbound::read_json(response, self.env.outbound.max_response_bytes(), what).await?;
        Ok((body, headers))
    }

    /// `GET /rate_limit`, and the certificate the API endpoint presented.
    pub(crate) async fn rate_limit(
        &self,
    ) -> Result<(RateLimit, Option<outbound::PeerCertificate>), Error> {
        let url = format!("{}/rate_limit", self.base);
        let response = self.send(|| self.request(Method::GET, &url)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "rate limit"));
        }
        let certificate = outbound::PeerCertificate::of(&response);
        let body = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "rate limit",
        )
        .await?;
        Ok((body, certificate))
    }

    /// The first page's URL.
    pub(crate) fn repositories_url(&self) -> String {
        format!(
            "{}/installation/repositories?per_page={PER_PAGE}",
            self.base
        )
    }

    pub(crate) async fn create_hook(
        &self,
        owner: &str,
        repo: &str,
        body: &serde_json::Value,
    ) -> Result<Hook, Error> {
        let url = format!("{}/repos/{owner}/{repo}/hooks", self.base);
        let response = self
            .send(|| Ok(self.request(Method::POST, &url)?.json(body)))
            .await?;
        let status = response.status();
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(Error::BadResponse(
                "the hook was refused (422): it may exist already, or the events are unknown"
                    .into(),
            ));
        }
        if !status.is_success() {
            return Err(outbound::status_error(status, "repository hooks"));
        }
        outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "repository hook",
        )
        .await
    }
}
