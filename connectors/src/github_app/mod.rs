//! GitHub App installations (github.com or GitHub Enterprise Server).
//!
//! The App's private key (PEM) is the secret behind the integration's AuthRef. Each call signs
//! an RS256 app JWT (`iat` −60 s, `exp` +9 min) and trades it for an installation token at
//! `POST /app/installations/{id}/access_tokens`; the token is cached until five minutes before
//! its `expires_at`, with one refresh in flight at a time.
//!
//! Health reads `GET /rate_limit`, which costs no quota and needs a working installation
//! token: quota below `quotaWarningPercent` is `degraded`, none left is `rate_limited` until the
//! reset. Repositories come from `GET /installation/repositories`, following `Link`; webhooks
//! are created with `POST /repos/{owner}/{repo}/hooks`, their secret from an AuthRef.

mod client;
pub mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use self::client::{GitHubClient, RateWindow};
pub use self::config::{Config, DEFAULT_API_BASE_URL, PermissionLevel};
use crate::config::ConfigError;
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
    Webhook, WebhookRequest,
};
use crate::health::{HealthReport, Quota, Reason};
use crate::provider::{Capability, Provider};
use crate::secrets::TenantRef;

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "github_app";
    const DISPLAY_NAME: &'static str = "GitHub App";
    const CAPABILITIES: &'static [Capability] = &[
        Capability::HealthCheck,
        Capability::ListResources,
        Capability::SetupWebhook,
    ];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        if config.app_id.is_none() && config.client_id.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "config.appId",
                "either appId or clientId is required",
            ));
        }
        if config.quota_warning_percent > 100 {
            return Err(ConfigError::invalid(
                "config.quotaWarningPercent",
                "at most 100",
            ));
        }
        crate::config::check_http_url("apiBaseUrl", &config.api_base_url)?;
        Ok(())
    }

    fn connect(
        config: Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        Ok(Arc::new(GitHubAppConnector {
            client: GitHubClient::new(config, spec.credential(), env.clone()),
            tenant: spec.tenant.clone(),
        }))
    }
}

// === impl GitHubAppConnector ===

/// The built connector of one installation.
pub struct GitHubAppConnector {
    client: GitHubClient,
    /// Whose namespace a webhook's signing secret must be in.
    tenant: String,
}

/// Judges the core rate-limit window: none left is `rate_limited` until the reset, less than
/// `warning_percent` left is `quota_low`, and the window is reported either way.
fn judge_quota(core: &RateWindow, warning_percent: u8) -> HealthReport {
    if core.limit == 0 {
        return HealthReport::healthy();
    }
    let quota = Quota {
        remaining: core.remaining,
        limit: Some(core.limit),
        reset_at: chrono::DateTime::from_timestamp(core.reset, 0),
    };
    if core.remaining == 0 {
        let wait = (core.reset - chrono::Utc::now().timestamp()).max(1) as u64;
        return HealthReport::rate_limited(
            Duration::from_secs(wait).min(crate::outbound::MAX_RETRY_AFTER),
        )
        .with_quota(Some(quota));
    }
    crate::outbound::judge_quota(HealthReport::healthy(), Some(quota), warning_percent)
}

/// `report`, degraded (`forbidden`) when the installation grants less than `required`,
/// naming what is missing.
fn judge_permissions(
    report: HealthReport,
    required: &std::collections::BTreeMap<String, PermissionLevel>,
    granted: &std::collections::BTreeMap<String, String>,
) -> HealthReport {
    let missing: Vec<String> = required
        .iter()
        .filter(|(name, level)| {
            granted
                .get(*name)
                .and_then(|g| PermissionLevel::parse(g))
                .is_none_or(|g| g < **level)
        })
        .map(|(name, level)| format!("{name}:{}", level.as_str()))
        .collect();
    if missing.is_empty() {
        return report;
    }
    report.warn(
        Reason::Forbidden,
        format!(
            "the installation does not grant the permissions this integration needs: {}",
            missing.join(", ")
        ),
    )
}

/// `owner/repo`, each part a GitHub name.
fn split_target(target: &str) -> Result<(&str, &str), Error> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match target.split_once('/') {
        Some((owner, repo)) if ok(owner) && ok(repo) => Ok((owner, repo)),
        _ => Err(Error::Config(ConfigError::invalid(
            "target",
            "must be owner/repo",
        ))),
    }
}

#[async_trait::async_trait]
impl Connector for GitHubAppConnector {
    async fn check_health(&self) -> HealthReport {
        match self.client.rate_limit().await {
            Ok((limits, certificate)) => {
                let report = judge_quota(
                    &limits.resources.core,
                    self.client.config.quota_warning_percent,
                );
                let report = match self.client.granted_permissions().await {
                    Some(granted) => judge_permissions(
                        report,
                        &self.client.config.required_permissions,
                        &granted,
                    ),
                    None => report,
                };
                crate::outbound::judge_certificate(
                    report,
                    certificate,
                    self.client.env.outbound.certificate_warning(),
                    chrono::Utc::now(),
                )
            }
            Err(e) => e.to_report(),
        }
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let url = match cursor {
            None => self.client.repositories_url(),
            Some(c) => crate::outbound::check_cursor_url(&self.client.base, c)?,
        };
        let (page, headers): (client::RepositoryList, _) = self
            .client
            .get_json(&url, "installation repositories")
            .await?;
        Ok(ResourcePage {
            resources: page
                .repositories
                .into_iter()
                .map(|r| Resource {
                    id: r.id.to_string(),
                    name: r.full_name,
                    kind: "repository",
                    url: r.html_url,
                })
                .collect(),
            next_cursor: crate::outbound::link_next(&headers),
        })
    }

    async fn setup_webhook(&self, request: &WebhookRequest) -> Result<Webhook, Error> {
        let (owner, repo) = split_target(&request.target)?;
        crate::config::check_http_url("url", &request.url)?;
        let mut config = json!({
            "url": request.url,
            "content_type": "json",
            "insecure_ssl": "0",
        });
        if let Some(secret_ref) = &request.secret {
            // The signing secret is the integration's tenant's, and it is sent to GitHub: it
            // must be in the tenant's namespace and allowed to go to the API's host.
            let secret_ref = TenantRef::new(self.tenant.as_str(), secret_ref.clone());
            let resolved = self.client.env.secrets.resolve(&secret_ref).await?;
            let api = url::Url::parse(&self.client.base)
                .map_err(|_| Error::BadResponse("the API base URL does not parse".into()))?;
            let secret = resolved.for_url(&secret_ref, &api)?;
            config["secret"] = Value::String(secret.expose().to_owned());
        }
        let events = if request.events.is_empty() {
            vec!["push".to_owned()]
        } else {
            request.events.clone()
        };
        let body = json!({"name": "web", "active": true, "events": events, "config": config});
        let hook = self.client.create_hook(owner, repo, &body).await?;
        Ok(Webhook {
            id: hook.id.to_string(),
            url: hook.config.url.unwrap_or_else(|| request.url.clone()),
            events: if hook.events.is_empty() {
                events
            } else {
                hook.events
            },
        })
    }
}
