//! GitLab (gitlab.com or self-managed), authenticated with a personal, project or group access
//! token referenced by the integration's AuthRef and sent as `PRIVATE-TOKEN`.
//!
//! Health reads `GET /api/v4/personal_access_tokens/self`: a revoked or inactive token is
//! `unhealthy` (`auth_failed`), one whose `expires_at` falls within `expiryWarningDays` is
//! `degraded` (`credential_expiring`), one whose `scopes` grant neither `read_api` nor `api`
//! (what listing projects needs) is `degraded` (`forbidden`). Token kinds that lack that
//! endpoint (it answers 404 or 403 for them) fall back to `GET /api/v4/user`. The answer's
//! `RateLimit-*` headers are read as the quota (`quota_low` below the deployment's share). Projects are listed with keyset pagination
//! (`pagination=keyset&order_by=id`), following the `Link` header.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::{HealthReport, Reason};
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::TenantRef;

/// Projects per page (GitLab's maximum).
const PER_PAGE: u32 = 100;
/// Longest accepted `expiryWarningDays`.
const MAX_EXPIRY_WARNING_DAYS: u32 = 365;

/// Configuration of a GitLab integration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The instance URL, such as `https://gitlab.com`.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub base_url: String,
    /// Days before a token's `expires_at` at which health turns `degraded`.
    #[serde(default = "default_expiry_warning_days")]
    #[schemars(range(max = 365))]
    pub expiry_warning_days: u32,
    /// List only projects the token's user is a member of (on gitlab.com, the alternative is
    /// every public project).
    #[serde(default = "default_membership")]
    pub membership: bool,
}

const fn default_expiry_warning_days() -> u32 {
    14
}

const fn default_membership() -> bool {
    true
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "gitlab";
    const DISPLAY_NAME: &'static str = "GitLab";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        config::check_http_url("baseUrl", &config.base_url)?;
        if config.expiry_warning_days > MAX_EXPIRY_WARNING_DAYS {
            return Err(ConfigError::invalid(
                "config.expiryWarningDays",
                format!("at most {MAX_EXPIRY_WARNING_DAYS}"),
            ));
        }
        Ok(())
    }

    fn connect(
        config: Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        Ok(Arc::new(GitLabConnector {
            api: format!("{}/api/v4", config.base_url.trim_end_matches('/')),
            config,
            credential: spec.credential(),
            env: env.clone(),
        }))
    }
}

// === impl GitLabConnector ===

/// `GET /personal_access_tokens/self`.
#[derive(Deserialize)]
struct TokenInfo {
    #[serde(default)]
    revoked: bool,
    #[serde(default = "default_active")]
    active: bool,
    /// A date (`2026-12-01`) from GitLab itself; a date-time in GitLab's API description.
    expires_at: Option<String>,
    /// Absent on older instances: then nothing is judged from it.
    scopes: Option<Vec<String>>,
}

/// Scopes any one of which lets the token read projects (`api` includes `read_api`).
const READ_SCOPES: [&str; 2] = ["read_api", "api"];

/// The calendar day of an `expires_at`, whichever of GitLab's two forms it has.
fn expiry_day(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.get(..10)?, "%Y-%m-%d").ok()
}

const fn default_active() -> bool {
    true
}

/// One project of `GET /projects`.
#[derive(Deserialize)]
struct Project {
    id: u64,
    path_with_namespace: String,
    web_url: Option<String>,
}

/// The built connector of one GitLab integration.
pub struct GitLabConnector {
    config: Config,
    /// `<baseUrl>/api/v4`.
    api: String,
    credential: Option<TenantRef>,
    env: ConnectorEnv,
}

impl GitLabConnector {
    async fn get(&self, url: &str) -> Result<reqwest::Response, Error> {
        let credential = self.credential.as_ref().ok_or(Error::NoCredentials(
            "a GitLab integration needs an authRef to an access token",
        ))?;
        self.env
            .send_with_secret(credential, |token| {
                Ok(self
                    .env
                    .outbound
                    .request(Method::GET, url)?
                    .header("PRIVATE-TOKEN", token.expose()))
            })
            .await
    }

    async fn check(&self) -> Result<HealthReport, Error> {
        let response = self
            .get(&format!("{}/personal_access_tokens/self", self.api))
            .await?;
        match response.status() {
            s if s.is_success() => {
                let headers = response.headers().clone();
                let certificate = outbound::PeerCertificate::of(&response);
                let info: TokenInfo = outbound::read_json(
                    response,
                    self.env.outbound.max_response_bytes(),
                    "personal access token",
                )
                .await?;
                let report = self.judge_token(&info, chrono::Utc::now().date_naive());
                Ok(self.judge_connection(report, &headers, certificate))
            }
            // Project, group and CI tokens, and older instances, have no such endpoint.
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => {
                let user = self.get(&format!("{}/user", self.api)).await?;
                let status = user.status();
                if !status.is_success() {
                    return Err(outbound::status_error(status, "current user"));
                }
                let headers = user.headers().clone();
                let certificate = outbound::PeerCertificate::of(&user);
                let _: Value = outbound::read_json(
                    user,
                    self.env.outbound.max_response_bytes(),
                    "current user",
                )
                .await?;
                Ok(self.judge_connection(HealthReport::healthy(), &headers, certificate))
            }
            s => Err(outbound::status_error(s, "personal access token")),
        }
    }

    /// `report` with what the check's answer told of the quota and the certificate.
    fn judge_connection(
        &self,
        report: HealthReport,
        headers: &reqwest::header::HeaderMap,
        certificate: Option<outbound::PeerCertificate>,
    ) -> HealthReport {
        let report = self.env.outbound.judge_quota(report, headers);
        outbound::judge_certificate(
            report,
            certificate,
            self.env.outbound.certificate_warning(),
            chrono::Utc::now(),
        )
    }

    fn judge_token(&self, info: &TokenInfo, today: NaiveDate) -> HealthReport {
        let report = self.judge_token_state(info, today);
        match info.expires_at.as_deref().and_then(expiry_day) {
            // GitLab tokens expire at the start of their expiry day (UTC).
            Some(day) => report.with_credential_expiry(day.and_time(NaiveTime::MIN).and_utc()),
            None => report,
        }
    }

    fn judge_token_state(&self, info: &TokenInfo, today: NaiveDate) -> HealthReport {
        if info.revoked {
            return HealthReport::unhealthy(Reason::AuthFailed, "the access token is revoked");
        }
        if !info.active {
            return HealthReport::unhealthy(
                Reason::AuthFailed,
                "the access token is inactive (expired or disabled)",
            );
        }
        if let Some(raw) = &info.expires_at {
            let Some(expires) = expiry_day(raw) else {
                return HealthReport::unhealthy(
                    Reason::BadResponse,
                    "personal access token: expires_at is not a date",
                );
            };
            let left = (expires - today).num_days();
            if left < 0 {
                return HealthReport::unhealthy(
                    Reason::AuthFailed,
                    format!("the access token expired on {expires}"),
                );
            }
            if left <= i64::from(self.config.expiry_warning_days) {
                return HealthReport::degraded(
                    Reason::CredentialExpiring,
                    format!("the access token expires on {expires}, in {left} days"),
                );
            }
        }
        if let Some(scopes) = &info.scopes
            && !scopes.iter().any(|s| READ_SCOPES.contains(&s.as_str()))
        {
            return HealthReport::degraded(
                Reason::Forbidden,
                "the access token has neither the read_api nor the api scope, which listing \
                 projects needs",
            );
        }
        HealthReport::healthy()
    }

    fn first_page(&self) -> String {
        let mut url = format!(
            "{}/projects?pagination=keyset&order_by=id&sort=asc&per_page={PER_PAGE}&simple=true",
            self.api
        );
        if self.config.membership {
            url.push_str("&membership=true");
        }
        url
    }
}

#[async_trait::async_trait]
impl Connector for GitLabConnector {
    async fn check_health(&self) -> HealthReport {
        self.check().await.unwrap_or_else(|e| e.to_report())
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let url = match cursor {
            None => self.first_page(),
            Some(c) => outbound::check_cursor_url(&self.api, c)?,
        };
        let response = self.get(&url).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "projects"));
        }
        let next_cursor = outbound::link_next(response.headers());
        let projects: Vec<Project> =
            outbound::read_json(response, self.env.outbound.max_response_bytes(), "projects")
                .await?;
        Ok(ResourcePage {
            resources: projects
                .into_iter()
                .map(|p| Resource {
                    id: p.id.to_string(),
                    name: p.path_with_namespace,
                    kind: "project",
                    url: p.web_url,
                })
                .collect(),
            next_cursor,
        })
    }
}
