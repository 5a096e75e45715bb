//! Harbor registries, authenticated with a robot account (`robot$...`) whose secret is behind
//! the integration's AuthRef (HTTP basic auth).
//!
//! Health reads `GET /api/v2.0/health` (components not `healthy` → `degraded`) and makes the
//! authenticated call real use needs, `GET /api/v2.0/projects?page_size=1`. Resources are the
//! projects (`/api/v2.0/projects`), then the image repositories (`/api/v2.0/repositories`),
//! both with Harbor's `page`/`page_size` pagination; the cursor says which list and page.
//!
//! The robot account's `expires_at` comes from `GET /api/v2.0/robots?q=name=<robot>`, read at
//! most once an hour: within the deployment's `[connectors.secrets] expiry_warning_days` it is
//! `degraded` (`credential_expiring`) with the date. A robot not allowed to read robot
//! accounts (401, 403) tells nothing, and nothing is judged.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::{Health, HealthReport, Reason};
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::TenantRef;

/// How long a robot account's expiry, once read, is trusted before it is read again.
const ROBOT_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// Items per page of a listing.
const PAGE_SIZE: u32 = 100;
/// Cursor prefixes: which listing a page belongs to.
const PROJECTS: &str = "projects";
const REPOSITORIES: &str = "repositories";

/// Configuration of a Harbor integration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The Harbor URL, such as `https://harbor.example.com`.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub base_url: String,
    /// The robot account name (`robot$...`); its secret comes from the AuthRef. Without one
    /// (and without an AuthRef) the connector sees what anonymous users see.
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::config::BASIC_USER_PATTERN))]
    pub robot_account: Option<String>,
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "harbor";
    const DISPLAY_NAME: &'static str = "Harbor";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        config::check_http_url("baseUrl", &config.base_url)?;
        config::check_basic_user("robotAccount", config.robot_account.as_deref())
    }

    fn connect(
        config: Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error> {
        let credentials = match (&config.robot_account, spec.credential()) {
            (Some(robot), Some(r)) => Some((robot.clone(), r)),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::Config(ConfigError::invalid(
                    "config.robotAccount",
                    "required with an authRef (the AuthRef holds the robot's secret)",
                )));
            }
            (Some(_), None) => {
                return Err(Error::Config(ConfigError::invalid(
                    "authRef",
                    "required with a robotAccount (it points at the robot's secret)",
                )));
            }
        };
        Ok(Arc::new(HarborConnector {
            api: format!("{}/api/v2.0", config.base_url.trim_end_matches('/')),
            credentials,
            env: env.clone(),
            robot_expiry: tokio::sync::Mutex::new(None),
        }))
    }
}

// === impl HarborConnector ===

/// `GET /health`.
#[derive(Deserialize)]
struct OverallHealth {
    status: String,
    #[serde(default)]
    components: Vec<ComponentHealth>,
}

#[derive(Deserialize)]
struct ComponentHealth {
    name: String,
    status: String,
}

#[derive(Deserialize)]
struct Project {
    /// int32 in Harbor's description.
    project_id: Option<i64>,
    name: String,
}

/// One robot account of `GET /robots`.
#[derive(Deserialize)]
struct Robot {
    name: String,
    /// Epoch seconds; -1 for never.
    expires_at: Option<i64>,
}

#[derive(Deserialize)]
struct Repository {
    id: Option<i64>,
    name: String,
}

/// The built connector of one Harbor integration.
pub struct HarborConnector {
    /// `<baseUrl>/api/v2.0`.
    api: String,
    /// The robot account and the reference to its secret.
    credentials: Option<(String, TenantRef)>,
    env: ConnectorEnv,
    /// When the robot's expiry was last read, and what it was.
    robot_expiry: tokio::sync::Mutex<Option<(tokio::time::Instant, Option<DateTime<Utc>>)>>,
}

impl HarborConnector {
    async fn get(&self, url: &str, query: &[(&str, String)]) -> Result<reqwest::Response, Error> {
        let make = || -> Result<reqwest::RequestBuilder, Error> {
            Ok(self.env.outbound.request(Method::GET, url)?.query(query))
        };
        match &self.credentials {
            None => self.env.outbound.send(make()?).await,
            Some((robot, auth_ref)) => {
                self.env
                    .send_with_secret(auth_ref, |secret| {
                        Ok(make()?.basic_auth(robot, Some(secret.expose())))
                    })
                    .await
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<(T, reqwest::header::HeaderMap), Error> {
        let response = self.get(url, query).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, what));
        }
        let headers = response.headers().clone();
        let body =
            outbound::read_json(response, self.env.outbound.max_response_bytes(), what).await?;
        Ok((body, headers))
    }

    async fn check(&self) -> Result<HealthReport, Error> {
        // The call real use needs, with the robot's permissions.
        let projects = self
            .get(
                &format!("{}/projects", self.api),
                &[("page_size", "1".into())],
            )
            .await?;
        let status = projects.status();
        if !status.is_success() {
            return Err(outbound::status_error(status, "projects"));
        }
        let headers = projects.headers().clone();
        let certificate = outbound::PeerCertificate::of(&projects);
        let _: Vec<Value> =
            outbound::read_json(projects, self.env.outbound.max_response_bytes(), "projects")
                .await?;
        let (health, _): (OverallHealth, _) = self
            .get_json(&format!("{}/health", self.api), &[], "health")
            .await?;
        let down: Vec<&str> = health
            .components
            .iter()
            .filter(|c| c.status != "healthy")
            .map(|c| c.name.as_str())
            .collect();
        let report = if !down.is_empty() {
            HealthReport::degraded(
                Reason::ProviderDegraded,
                format!("components not healthy: {}", down.join(", ")),
            )
        } else if health.status != "healthy" {
            HealthReport::degraded(Reason::ProviderDegraded, "Harbor reports itself unhealthy")
        } else {
            HealthReport::healthy()
        };
        let report = self.judge_robot(report).await;
        // Harbor sends no quota headers of its own; a proxy in front of it may.
        let report = self.env.outbound.judge_quota(report, &headers);
        Ok(outbound::judge_certificate(
            report,
            certificate,
            self.env.outbound.certificate_warning(),
            chrono::Utc::now(),
        ))
    }

    /// The robot account's expiry, read at most every [`ROBOT_REFRESH`].
    async fn robot_expiry(&self) -> Option<DateTime<Utc>> {
        let (robot, _) = self.credentials.as_ref()?;
        let mut cached = self.robot_expiry.lock().await;
        if let Some((read_at, expiry)) = *cached
            && read_at.elapsed() < ROBOT_REFRESH
        {
            return expiry;
        }
        let expiry = self.read_robot_expiry(robot).await;
        *cached = Some((tokio::time::Instant::now(), expiry));
        expiry
    }

    async fn read_robot_expiry(&self, robot: &str) -> Option<DateTime<Utc>> {
        let (robots, _): (Vec<Robot>, _) = self
            .get_json(
                &format!("{}/robots", self.api),
                &[("q", format!("name={robot}")), ("page_size", "10".into())],
                "robots",
            )
            .await
            .ok()?;
        // Harbor names project robots `robot$<project>+<name>` and may list the bare name.
        robots
            .iter()
            .find(|r| r.name == robot || robot.strip_prefix("robot$") == Some(r.name.as_str()))?
            .expires_at
            .filter(|at| *at > 0)
            .and_then(|at| DateTime::from_timestamp(at, 0))
    }

    /// `report` with the robot's expiry, warned within the horizon.
    async fn judge_robot(&self, report: HealthReport) -> HealthReport {
        let Some(at) = self.robot_expiry().await else {
            return report;
        };
        let report = report.with_credential_expiry(at);
        let horizon = self.env.secrets.expiry_warning();
        let now = Utc::now();
        if horizon > chrono::Duration::zero() && at - now <= horizon {
            let robot = self.credentials.as_ref().map_or("", |(r, _)| r.as_str());
            let day = at.format("%Y-%m-%d %H:%M UTC");
            return report.warn(
                Reason::CredentialExpiring,
                format!("the robot account {robot} expires on {day}"),
            );
        }
        report
    }

    /// One page of a listing, and whether another follows.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        list: &str,
        page: u32,
    ) -> Result<(Vec<T>, bool), Error> {
        let (items, headers): (Vec<T>, _) = self
            .get_json(
                &format!("{}/{list}", self.api),
                &[
                    ("page", page.to_string()),
                    ("page_size", PAGE_SIZE.to_string()),
                ],
                list,
            )
            .await?;
        let more = match outbound::link_next(&headers) {
            Some(_) => true,
            // Older Harbors send no Link: a full page may have a successor.
            None => {
                !headers.contains_key(reqwest::header::LINK) && items.len() == PAGE_SIZE as usize
            }
        };
        Ok((items, more))
    }
}

fn parse_cursor(cursor: &str) -> Result<(&str, u32), Error> {
    let (list, page) = cursor.split_once(':').ok_or(Error::InvalidCursor)?;
    let page: u32 = page.parse().map_err(|_| Error::InvalidCursor)?;
    match list {
        PROJECTS | REPOSITORIES if (1..=100_000).contains(&page) => Ok((list, page)),
        _ => Err(Error::InvalidCursor),
    }
}

#[async_trait::async_trait]
impl Connector for HarborConnector {
    async fn check_health(&self) -> HealthReport {
        let report = self.check().await.unwrap_or_else(|e| e.to_report());
        debug_assert!(report.health == Health::Healthy || report.reason.is_some());
        report
    }

    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        let (list, page) = match cursor {
            None => (PROJECTS, 1),
            Some(c) => parse_cursor(c)?,
        };
        if list == PROJECTS {
            let (projects, more): (Vec<Project>, _) = self.page(PROJECTS, page).await?;
            return Ok(ResourcePage {
                resources: projects
                    .into_iter()
                    .map(|p| Resource {
                        id: p
                            .project_id
                            .map_or_else(|| p.name.clone(), |id| id.to_string()),
                        name: p.name,
                        kind: "project",
                        url: None,
                    })
                    .collect(),
                // After the last page of projects come the repositories.
                next_cursor: Some(if more {
                    format!("{PROJECTS}:{}", page + 1)
                } else {
                    format!("{REPOSITORIES}:1")
                }),
            });
        }
        let (repositories, more): (Vec<Repository>, _) = self.page(REPOSITORIES, page).await?;
        Ok(ResourcePage {
            resources: repositories
                .into_iter()
                .map(|r| Resource {
                    id: r.id.map_or_else(|| r.name.clone(), |id| id.to_string()),
                    name: r.name,
                    kind: "image_repository",
                    url: None,
                })
                .collect(),
            next_cursor: more.then(|| format!("{REPOSITORIES}:{}", page + 1)),
        })
    }
}
