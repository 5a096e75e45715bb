//! `/api/v1/integrations/plugins`: the connector types this daemon can register, with what
//! each can do and the JSON Schema of its configuration (so clients can render forms), and
//! discovery of external plugins.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::error::{ApiError, ERROR_CODE_INTERNAL, Problem, Problems, status as s};
use super::security::BearerAuth;
use crate::AppState;
use crate::auth::Scope;

/// A connector plugin.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Plugin {
    /// The provider type integrations use, such as `gitlab`.
    pub provider_type: String,
    pub display_name: String,
    /// The plugin's id: `builtin.<type>` for built-ins, the manifest's id otherwise.
    pub plugin_id: String,
    pub version: String,
    /// `health_check`, `list_resources`, `setup_webhook`.
    pub capabilities: Vec<String>,
    /// JSON Schema of the `config` object.
    pub config_schema: Value,
    /// Built into the daemon (as opposed to discovered in a plugin directory).
    pub builtin: bool,
}

/// A plugin folder that was not loaded.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct RejectedPlugin {
    pub dir: String,
    #[oai(nullable)]
    pub id: Option<String>,
    #[oai(nullable)]
    pub provider_type: Option<String>,
    /// `bad_manifest`, `duplicate_type`, `duplicate_id`, `incompatible_protocol`,
    /// `missing_executable` or `not_executable`.
    pub code: String,
    pub message: String,
}

/// What a discovery changed, by plugin id.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DiscoveryReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    pub rejected: Vec<RejectedPlugin>,
    /// Configured directories that could not be read.
    pub dir_errors: Vec<String>,
}

pub struct PluginsApi;

// Full paths, no prefix: two OpenApi impls nested at one prefix would shadow each other.
#[OpenApi(tag = "ApiTags::Integrations")]
impl PluginsApi {
    /// List connector plugins
    ///
    /// Every provider type that can be registered now, sorted by type.
    #[oai(
        path = "/api/v1/integrations/plugins",
        method = "get",
        operation_id = "plugin_list"
    )]
    async fn plugin_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
    ) -> Result<Json<Vec<Plugin>>, Problems<{ s::AUTHENTICATED }>> {
        auth.require(Scope::Read)?;
        let known = state.store.plugins().await.map_err(|error| {
            tracing::error!(message = "Reading plugin metadata failed.", %error);
            ApiError::internal()
        })?;
        let factories: Vec<_> = state
            .registry
            .read()
            .expect("registry lock")
            .iter()
            .cloned()
            .collect();
        Ok(Json(
            factories
                .iter()
                .map(|f| {
                    let row = known.iter().find(|r| r.provider_type == f.provider_type());
                    Plugin {
                        provider_type: f.provider_type().to_owned(),
                        display_name: f.display_name().to_owned(),
                        plugin_id: row.map_or_else(
                            || format!("builtin.{}", f.provider_type()),
                            |r| r.plugin_id.clone(),
                        ),
                        version: row.map_or_else(
                            || env!("CARGO_PKG_VERSION").to_owned(),
                            |r| r.version.clone(),
                        ),
                        capabilities: f
                            .capabilities()
                            .iter()
                            .map(|c| c.as_str().to_owned())
                            .collect(),
                        config_schema: f.config_schema(),
                        builtin: row.is_none_or(|r| r.path.is_none()),
                    }
                })
                .collect(),
        ))
    }

    /// Discover connector plugins
    ///
    /// Scans the configured plugin directories now, starts new and changed plugins, retires
    /// removed ones (their integrations' monitors are rebuilt), records the result in the
    /// plugin metadata, and answers with what changed and what was rejected and why. Needs the
    /// `integrations:admin` scope. Rediscovery without changes changes nothing.
    #[oai(
        path = "/api/v1/integrations/plugins/discover",
        method = "post",
        operation_id = "plugin_discover"
    )]
    async fn plugin_discover(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
    ) -> Result<Json<DiscoveryReport>, Problems<{ s::AUTHENTICATED }>> {
        let principal = auth.require(Scope::Admin)?;
        let report = state.plugins.discover().await.map_err(|error| {
            tracing::error!(message = "Plugin discovery failed.", %error);
            ApiError::from_problem(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ERROR_CODE_INTERNAL,
                "plugin discovery failed; see the daemon's log".to_owned(),
            ))
        })?;
        tracing::info!(message = "Plugin discovery requested.", actor = %principal.subject);
        Ok(Json(DiscoveryReport {
            added: report.added,
            updated: report.updated,
            removed: report.removed,
            unchanged: report.unchanged,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| RejectedPlugin {
                    dir: r.dir,
                    id: r.id,
                    provider_type: r.provider_type,
                    code: r.code,
                    message: r.message,
                })
                .collect(),
            dir_errors: report.dir_errors,
        }))
    }
}
