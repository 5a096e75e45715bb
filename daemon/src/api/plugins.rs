//! `/api/v1/integrations/plugins`: the connector types this daemon can register, with what
//! each can do and the JSON Schema of its configuration, so clients can render forms.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::error::ApiError;
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
    /// `health_check`, `list_resources`, `setup_webhook`.
    pub capabilities: Vec<String>,
    /// JSON Schema of the `config` object.
    pub config_schema: Value,
    /// Built into the daemon (as opposed to discovered from a plugin directory).
    pub builtin: bool,
}

pub struct PluginsApi;

// Full paths, no prefix: two OpenApi impls nested at one prefix would shadow each other.
#[OpenApi(tag = "ApiTags::Integrations")]
impl PluginsApi {
    /// List connector plugins
    ///
    /// Every provider type that can be registered, sorted by type.
    #[oai(
        path = "/api/v1/integrations/plugins",
        method = "get",
        operation_id = "plugin_list"
    )]
    async fn plugin_list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
    ) -> Result<Json<Vec<Plugin>>, ApiError> {
        auth.require(Scope::Read)?;
        Ok(Json(
            state
                .registry
                .iter()
                .map(|f| Plugin {
                    provider_type: f.provider_type().to_owned(),
                    display_name: f.display_name().to_owned(),
                    capabilities: f
                        .capabilities()
                        .iter()
                        .map(|c| c.as_str().to_owned())
                        .collect(),
                    config_schema: f.config_schema(),
                    builtin: true,
                })
                .collect(),
        ))
    }
}
