//! Amazon Elastic Container Registry (ECR), through the ECR API with an AWS access key.
//!
//! The integration's AuthRef names one secret with the fields `access_key_id`,
//! `secret_access_key` and, for temporary credentials, `session_token` (each resolved as that
//! `#key` of the secret, so all three live under the tenant's namespace and share the
//! secret's host binding). Every call is a SigV4-signed `POST /` of the JSON 1.1 protocol:
//!
//! - `GetAuthorizationToken` mints the registry token (valid 12 hours) that a client of the
//!   registry itself needs; it is cached until five minutes before its `expiresAt`, per
//!   tenant and integration ([`super::tokens`]). Its expiry is no warning: it is renewed.
//! - `DescribeRepositories` lists the repositories (ECR serves no `/v2/_catalog`), following
//!   `nextToken`; with `maxResults` 1 it is also the health probe, so a check proves that
//!   the access key still works and may read the registry, as real use needs, and costs one
//!   request while the token is cached.

mod sigv4;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use self::sigv4::AccessKey;
use super::tokens::{Minted, TokenKey};
use crate::authref::AuthRef;
use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, Resource, ResourcePage, SharedConnector,
};
use crate::health::HealthReport;
use crate::outbound;
use crate::provider::{Capability, Provider};
use crate::secrets::{Resolved, Secret, SecretError, TenantRef};

/// The signing name of the ECR API.
const SERVICE: &str = "ecr";
/// The JSON 1.1 protocol's target prefix for ECR.
const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The fields of the AuthRef's secret.
pub const ACCESS_KEY_ID_FIELD: &str = "access_key_id";
pub const SECRET_ACCESS_KEY_FIELD: &str = "secret_access_key";
pub const SESSION_TOKEN_FIELD: &str = "session_token";
/// Largest `pageSize` (DescribeRepositories' `maxResults` limit).
const MAX_PAGE_SIZE: u32 = 1000;
/// Longest `nextToken` accepted back as a cursor.
const MAX_CURSOR_LEN: usize = 4096;

/// Configuration of an Amazon ECR integration. The access key is the secret behind the
/// integration's AuthRef (fields `access_key_id`, `secret_access_key`, optional
/// `session_token`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The AWS region of the registry, such as `eu-west-1`.
    #[schemars(regex(pattern = REGION_PATTERN))]
    pub region: String,
    /// The registry's AWS account id (12 digits); the access key's own account when unset.
    #[schemars(regex(pattern = "^[0-9]{12}$"))]
    pub registry_id: Option<String>,
    /// The ECR API endpoint; `https://api.ecr.<region>.amazonaws.com` when unset. Set it for a
    /// VPC endpoint, a FIPS endpoint or a test server.
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub endpoint_url: Option<String>,
    /// Repositories asked for per `DescribeRepositories` page (`maxResults`).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: u32,
}

const fn default_page_size() -> u32 {
    100
}

/// What [`valid_region`] accepts, as the schema's `pattern`.
pub const REGION_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$";

fn valid_region(region: &str) -> bool {
    // Used in the default host name: nothing but what AWS region names are made of.
    (1..=32).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

pub struct Factory;

impl Provider for Factory {
    const TYPE: &'static str = "ecr";
    const DISPLAY_NAME: &'static str = "Amazon ECR";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::HealthCheck, Capability::ListResources];
    type Config = Config;

    fn check(config: &Config) -> Result<(), ConfigError> {
        if !valid_region(&config.region) {
            return Err(ConfigError::invalid(
                "config.region",
                "must be an AWS region name such as eu-west-1",
            ));
        }
        if let Some(id) = &config.registry_id
            && !(id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ConfigError::invalid(
                "config.registryId",
                "must be a 12-digit AWS account id",
            ));
        }
        if let Some(url) = &config.endpoint_url {
            config::check_http_url("endpointUrl", url)?;
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
        let endpoint = match &config.endpoint_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://api.ecr.{}.amazonaws.com", config.region),
        };
        Ok(Arc::new(EcrConnector {
            endpoint: format!("{endpoint}/"),
            config,
            credential: spec.credential(),
            token_key: TokenKey::new(spec, "authorization"),
            env: env.clone(),
        }))
    }
}

// === wire types ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationAnswer {
    #[serde(default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    /// Epoch seconds (JSON 1.1 timestamps are numbers).
    expires_at: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoriesAnswer {
    #[serde(default)]
    repositories: Vec<Repository>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Repository {
    repository_name: String,
    repository_arn: Option<String>,
}

/// An AWS error answer: JSON 1.1 (`__type`) or, from some front ends, XML (`<Code>`).
#[derive(Deserialize)]
struct AwsErrorJson {
    #[serde(rename = "__type")]
    kind: Option<String>,
    code: Option<String>,
}

/// The AWS error code of an error body, without its namespace prefix.
pub(crate) fn aws_error_code(body: &[u8]) -> Option<String> {
    if let Ok(e) = serde_json::from_slice::<AwsErrorJson>(body)
        && let Some(kind) = e.kind.or(e.code)
    {
        let name = kind.rsplit(['#', ':']).next().unwrap_or(&kind);
        return Some(name.trim().to_owned());
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].trim().to_owned())
}

/// The domain error of an AWS error answer.
pub(crate) fn aws_error(status: StatusCode, code: Option<&str>, what: &str) -> Error {
    match code {
        Some(
            "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredTokenException"
            | "ExpiredToken",
        ) => Error::Unauthorized,
        Some("AccessDeniedException" | "AccessDenied") => Error::Forbidden,
        Some("ThrottlingException" | "Throttling" | "TooManyRequestsException") => {
            Error::RateLimited { retry_after: None }
        }
        Some("RepositoryNotFoundException" | "RegistryNotFoundException") => {
            Error::NotFound(what.to_owned())
        }
        Some("ServerException" | "InternalFailure" | "ServiceUnavailable") => Error::Provider {
            status: status.as_u16(),
        },
        _ => outbound::status_error(status, what),
    }
}

/// `nextToken` handed back as a cursor: printable ASCII without spaces, bounded.
fn valid_cursor(cursor: &str) -> bool {
    !cursor.is_empty()
        && cursor.len() <= MAX_CURSOR_LEN
        && cursor.chars().all(|c| c.is_ascii_graphic())
}

// === impl EcrConnector ===

/// The built connector of one registry.
pub struct EcrConnector {
    /// The API endpoint with a trailing slash (requests are `POST /`).
    endpoint: String,
    config: Config,
    credential: Option<TenantRef>,
    token_key: TokenKey,
    env: ConnectorEnv,
}

impl EcrConnector {
    /// One field of the AuthRef's secret.
    fn field(&self, base: &TenantRef, field: &str) -> TenantRef {
        TenantRef::new(
            base.tenant(),
            AuthRef {
                key: Some(field.to_owned()),
                ..base.reference().clone()
            },
        )
    }

    /// The access key, each field checked against the secret's host binding for `url`.
    async fn access_key(&self, url: &url::Url) -> Result<AccessKey, Error> {
        let base = self.credential.as_ref().ok_or(Error::NoCredentials(
            "an ECR integration needs an authRef to an AWS access key",
        ))?;
        if base.reference().key.is_some() {
            return Err(Error::BadCredential(
                "the authRef must name the whole secret (fields access_key_id, \
                 secret_access_key, session_token), without #key"
                    .into(),
            ));
        }
        let id_ref = self.field(base, ACCESS_KEY_ID_FIELD);
        let secret_ref = self.field(base, SECRET_ACCESS_KEY_FIELD);
        let token_ref = self.field(base, SESSION_TOKEN_FIELD);
        let bound = |r: &TenantRef, resolved: Resolved| -> Result<Secret, Error> {
            Ok(resolved.for_url(r, url)?.clone())
        };
        let id = bound(&id_ref, self.env.secrets.resolve(&id_ref).await?)?;
        let secret = bound(&secret_ref, self.env.secrets.resolve(&secret_ref).await?)?;
        let session_token = match self.env.secrets.resolve(&token_ref).await {
            Ok(resolved) => Some(bound(&token_ref, resolved)?),
            Err(SecretError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(AccessKey {
            id,
            secret,
            session_token,
        })
    }

    /// Signs and sends one ECR API call; on a refused key the secret is read again once (it
    /// may have been rotated). Returns the answer of a successful call.
    async fn call(
        &self,
        action: &str,
        body: serde_json::Value,
    ) -> Result<reqwest::Response, Error> {
        let url = url::Url::parse(&self.endpoint)
            .map_err(|_| Error::BadResponse("the endpoint URL does not parse".into()))?;
        let body = serde_json::to_vec(&body).map_err(|e| Error::BadResponse(e.to_string()))?;
        let target = format!("{TARGET_PREFIX}.{action}");
        let mut retried = false;
        loop {
            let key = self.access_key(&url).await?;
            let signed = sigv4::sign_headers(
                &key,
                &self.config.region,
                SERVICE,
                sigv4::Parts {
                    method: "POST",
                    url: url.as_str(),
                    headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", &target)],
                    body: &body,
                },
                SystemTime::now(),
            )?;
            let mut request = self
                .env
                .outbound
                .request(Method::POST, url.as_str())?
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .header("x-amz-target", &target)
                .body(body.clone());
            for (name, value) in &signed {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = self.env.outbound.send(request).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let max = self.env.outbound.max_response_bytes().min(64 * 1024);
            let error_body = read_capped(response, max).await;
            let error = aws_error(status, aws_error_code(&error_body).as_deref(), action);
            if matches!(error, Error::Unauthorized) && !retried {
                retried = true;
                if let Some(base) = &self.credential {
                    for field in [
                        ACCESS_KEY_ID_FIELD,
                        SECRET_ACCESS_KEY_FIELD,
                        SESSION_TOKEN_FIELD,
                    ] {
                        self.env.secrets.invalidate(&self.field(base, field)).await;
                    }
                }
                continue;
            }
            return Err(error);
        }
    }

    /// `GetAuthorizationToken`, minted through the token cache.
    pub(crate) async fn authorization_token(&self) -> Result<Secret, Error> {
        self.env
            .cloud_tokens
            .get_or_mint(&self.token_key, || self.mint_authorization_token())
            .await
    }

    async fn mint_authorization_token(&self) -> Result<Minted, Error> {
        let body = match &self.config.registry_id {
            Some(id) => json!({"registryIds": [id]}),
            None => json!({}),
        };
        let response = self.call("GetAuthorizationToken", body).await?;
        let answer: AuthorizationAnswer = outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "GetAuthorizationToken",
        )
        .await?;
        let data = answer
            .authorization_data
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::BadResponse("GetAuthorizationToken: no authorizationData".into())
            })?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|t| t.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
            .ok_or_else(|| {
                Error::BadResponse("GetAuthorizationToken: not a base64 user:password".into())
            })?;
        let now = Utc::now();
        let expires_at = data
            .expires_at
            .and_then(|s| DateTime::from_timestamp(s as i64, 0))
            .unwrap_or(now);
        tracing::debug!(
            message = "ECR authorization token issued.",
            region = %self.config.region,
            %expires_at,
        );
        // The registry's basic credentials, `AWS:<password>`, as a client of the registry
        // sends them.
        Ok(Minted::new(Secret::new(decoded), now, expires_at))
    }

    async fn repositories(
        &self,
        max: u32,
        next_token: Option<&str>,
    ) -> Result<RepositoriesAnswer, Error> {
        let mut body = json!({"maxResults": max});
        if let Some(id) = &self.config.registry_id {
            body["registryId"] = json!(id);
        }
        if let Some(t) = next_token {
            body["nextToken"] = json!(t);
        }
        let response = self.call("DescribeRepositories", body).await?;
        outbound::read_json(
            response,
            self.env.outbound.max_response_bytes(),
            "DescribeRepositories",
        )
        .await
    }

    async fn check(&self) -> Result<HealthReport, Error> {
        self.authorization_token().await?;
        self.repositories(1, None).await?;
        Ok(HealthReport::healthy())
    }
}

/// At most `max` bytes of an error answer (empty when it cannot be read).
async fn read_capped(mut response: reqwest::Response, max: u64) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() as u64 + chunk.len() as u64 > max {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

#[async_trait::async_trait]
impl Connector for EcrConnector {
    async fn check_health(&self) -> HealthReport {
        self.check().await.unwrap_or_else(|e| e.to_report())
    }

    /// As a check, with the authorization token minted anew: verification proves the
    /// credential, not a token cached from it.
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
        let answer = self.repositories(self.config.page_size, cursor).await?;
        Ok(ResourcePage {
            resources: answer
                .repositories
                .into_iter()
                .map(|r| Resource {
                    id: r
                        .repository_arn
                        .unwrap_or_else(|| r.repository_name.clone()),
                    name: r.repository_name,
                    kind: "image_repository",
                    url: None,
                })
                .collect(),
            next_cursor: answer.next_token.filter(|t| !t.is_empty()),
        })
    }
}
