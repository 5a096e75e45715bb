//! `/api/v1/api-keys`: a tenant's API keys, managed without editing the configuration or
//! restarting.
//!
//! A key is shown once, in the answer that creates it; only its SHA-256 is stored. Creating
//! and deleting keys needs `integrations:admin`, is recorded in the audit trail (never the key
//! nor its digest), and a caller cannot give a key a scope it does not hold itself. A deleted
//! key is refused at once by every replica ([`crate::auth::stored`]). Keys from the
//! configuration are listed too, read-only (`source: config`): they change with the
//! configuration (and `SIGHUP`).

use std::sync::Arc;

use actors::store::keys::NewApiKey;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use super::error::{ApiError, ERROR_CODE_CONFLICT, Problem, Problems, status as s};
use super::security::BearerAuth;
use crate::AppState;
use crate::auth::{ConfiguredKey, Scope, api_key};

/// Longest `name`.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest lifetime of a key made through the API.
pub const MAX_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(5 * 366);

/// A scope an API key can hold. `integrations:write` includes `read`; `admin` includes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ApiKeyScope {
    #[oai(rename = "integrations:read")]
    Read,
    #[oai(rename = "integrations:write")]
    Write,
    #[oai(rename = "integrations:admin")]
    Admin,
}

impl From<ApiKeyScope> for Scope {
    fn from(s: ApiKeyScope) -> Self {
        match s {
            ApiKeyScope::Read => Scope::Read,
            ApiKeyScope::Write => Scope::Write,
            ApiKeyScope::Admin => Scope::Admin,
        }
    }
}

impl ApiKeyScope {
    fn parse(name: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Admin]
            .into_iter()
            .find(|s| Scope::from(*s).as_str() == name)
    }
}

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ApiKeySource {
    /// Made through this API (or generated at first start); can be deleted here.
    Api,
    /// From the configuration (`[[auth.api_keys]]`); read-only here.
    Config,
}

/// A key to create.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// A name for people, such as `ci-scanner` (at most 100 characters).
    pub name: Option<String>,
    /// What the key may do; each must be held by the caller.
    pub scopes: Vec<ApiKeyScope>,
    /// After this time the key is refused; in the future, at most five years ahead. Without
    /// it the key lasts until deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key, without its secret.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKey {
    /// The key's id; its audit actor is `apikey:<id>`.
    pub id: String,
    #[oai(nullable)]
    pub name: Option<String>,
    pub source: ApiKeySource,
    pub scopes: Vec<ApiKeyScope>,
    /// When it was created (null for configured keys).
    #[oai(nullable)]
    pub created_at: Option<DateTime<Utc>>,
    /// Who created it (null for configured keys and the key generated at first start).
    #[oai(nullable)]
    pub created_by: Option<String>,
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used, to within a minute (null if never, and for configured keys).
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created: the only answer that holds the key itself.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    /// The key, to send as `Authorization: Bearer <key>`. Shown this once; only its SHA-256
    /// is kept.
    pub key: String,
    #[oai(flatten)]
    pub api_key: ApiKey,
}

/// A tenant's API keys: configured ones first, then stored ones, oldest first.
#[derive(Debug, Clone, Object)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

#[derive(ApiResponse)]
pub enum ApiKeyCreatedResponse {
    /// Created. The body holds the key; it is not shown again.
    #[oai(status = 201)]
    Created(
        Json<ApiKeyCreated>,
        /// The new key's URL.
        #[oai(header = "Location")]
        String,
        /// `no-store`: the body holds a secret.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum ApiKeyDeleted {
    /// Deleted; the key is refused from now on, by every replica.
    #[oai(status = 204)]
    NoContent,
}

fn of_stored(m: entity::api_key::Model) -> ApiKey {
    let scopes: Vec<String> = serde_json::from_value(m.scopes).unwrap_or_default();
    ApiKey {
        id: m.id,
        name: m.name,
        source: ApiKeySource::Api,
        scopes: scopes
            .iter()
            .filter_map(|s| ApiKeyScope::parse(s))
            .collect(),
        created_at: Some(m.created_at),
        created_by: m.created_by,
        expires_at: m.expires_at,
        last_used_at: m.last_used_at,
    }
}

fn of_configured(k: ConfiguredKey) -> ApiKey {
    ApiKey {
        id: k.id,
        name: None,
        source: ApiKeySource::Config,
        scopes: k
            .scopes
            .iter()
            .filter_map(|s| ApiKeyScope::parse(s))
            .collect(),
        created_at: None,
        created_by: None,
        expires_at: None,
        last_used_at: None,
    }
}

fn not_found(id: &str) -> ApiError {
    // The id is the caller's input: named only when it is short and plain.
    let plain = id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ApiError::not_found(if plain {
        format!("API key {id} not found")
    } else {
        "API key not found".to_owned()
    })
}

fn check_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must not hold control characters",
        ));
    }
    Ok(Some(name))
}

pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/v1/api-keys", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key
    ///
    /// Answers with the key itself, once: only its SHA-256 is stored. The key holds the
    /// given scopes, each of which the caller must hold (403 otherwise), and is refused after
    /// `expiresAt`. Needs `integrations:admin`; audited (without the key).
    #[oai(path = "/", method = "post", operation_id = "api_key_create")]
    async fn api_key_create(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
        body: Json<ApiKeyCreate>,
    ) -> Result<ApiKeyCreatedResponse, Problems<{ s::AUTHENTICATED | s::BODY | s::CONFLICT }>> {
        let principal = auth.require(Scope::Admin)?;
        let body = body.0;
        if body.scopes.is_empty() {
            return Err(ApiError::invalid("scopes", "at least one scope").into());
        }
        if let Some(missing) = body
            .scopes
            .iter()
            .map(|s| Scope::from(*s))
            .find(|s| !principal.has(*s))
        {
            return Err(ApiError::forbidden(missing.as_str()).into());
        }
        let now = Utc::now();
        if let Some(at) = body.expires_at {
            if at <= now {
                return Err(ApiError::invalid("expiresAt", "must be in the future").into());
            }
            if at > now + MAX_LIFETIME {
                return Err(ApiError::invalid("expiresAt", "at most five years ahead").into());
            }
        }
        let name = check_name(body.name)?;
        let mut scopes: Vec<String> = body
            .scopes
            .iter()
            .map(|s| Scope::from(*s).as_str().to_owned())
            .collect();
        scopes.sort();
        scopes.dedup();
        let key = api_key::generate();
        let created = state
            .store
            .tenant(principal.tenant.clone())
            .api_key_create(
                &principal.subject,
                NewApiKey {
                    id: uuid::Uuid::now_v7().to_string(),
                    name,
                    key_sha256: hex::encode(api_key::digest(&key)),
                    scopes,
                    expires_at: body.expires_at,
                },
            )
            .await?;
        tracing::info!(
            message = "API key created.",
            key_id = %created.id,
            tenant_id = %principal.tenant,
        );
        let location = state.location(&format!("/api/v1/api-keys/{}", created.id));
        Ok(ApiKeyCreatedResponse::Created(
            Json(ApiKeyCreated {
                key,
                api_key: of_stored(created),
            }),
            location,
            "no-store".to_owned(),
        ))
    }

    /// List API keys
    ///
    /// The tenant's keys, without their secrets: configured ones (read-only) first, then
    /// those made through the API, oldest first. Needs `integrations:admin`.
    #[oai(path = "/", method = "get", operation_id = "api_key_list")]
    async fn api_key_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
    ) -> Result<Json<ApiKeyList>, Problems<{ s::AUTHENTICATED }>> {
        let principal = auth.require(Scope::Admin)?;
        let mut items: Vec<ApiKey> = state
            .auth
            .configured_keys(&principal.tenant)
            .into_iter()
            .map(of_configured)
            .collect();
        let stored = state
            .store
            .tenant(principal.tenant.clone())
            .api_key_list()
            .await?;
        items.extend(stored.into_iter().map(of_stored));
        Ok(Json(ApiKeyList { items }))
    }

    /// Get an API key
    ///
    /// One of the tenant's keys, without its secret. Needs `integrations:admin`.
    #[oai(path = "/:id", method = "get", operation_id = "api_key_get")]
    async fn api_key_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
        id: Path<String>,
    ) -> Result<Json<ApiKey>, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>> {
        let principal = auth.require(Scope::Admin)?;
        if let Some(k) = state
            .auth
            .configured_keys(&principal.tenant)
            .into_iter()
            .find(|k| k.id == id.0)
        {
            return Ok(Json(of_configured(k)));
        }
        state
            .store
            .tenant(principal.tenant.clone())
            .api_key_get(&id.0)
            .await?
            .map(|m| Json(of_stored(m)))
            .ok_or_else(|| not_found(&id.0).into())
    }

    /// Delete an API key
    ///
    /// The key is refused from now on by every replica (within a second). A configured key
    /// cannot be deleted here (409): remove it from the configuration. Needs
    /// `integrations:admin`; audited.
    #[oai(path = "/:id", method = "delete", operation_id = "api_key_delete")]
    async fn api_key_delete(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
        id: Path<String>,
    ) -> Result<
        ApiKeyDeleted,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND | s::CONFLICT }>,
    > {
        let principal = auth.require(Scope::Admin)?;
        if state
            .auth
            .configured_keys(&principal.tenant)
            .iter()
            .any(|k| k.id == id.0)
        {
            return Err(ApiError::from_problem(
                Problem::new(
                    StatusCode::CONFLICT,
                    ERROR_CODE_CONFLICT,
                    "a configured key is read-only here: remove it from the configuration \
                     and reload"
                        .to_owned(),
                )
                .with_field("id", "configured key"),
            )
            .into());
        }
        let deleted = state
            .store
            .tenant(principal.tenant.clone())
            .api_key_delete(&principal.subject, &id.0)
            .await?
            .ok_or_else(|| not_found(&id.0))?;
        if let Some(stored) = state.auth.stored() {
            stored.forget(&deleted.id);
        }
        tracing::info!(
            message = "API key deleted.",
            key_id = %deleted.id,
            tenant_id = %principal.tenant,
        );
        Ok(ApiKeyDeleted::NoContent)
    }
}
