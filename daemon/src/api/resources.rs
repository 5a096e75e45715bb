//! `/api/v1/integrations/{id}/resources` and `/webhooks`: what is behind an integration, for
//! Scanner and friends, and webhook set-up where the provider supports it.

use std::sync::Arc;

use connectors::SharedConnector;
use connectors::connector::WebhookRequest;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::error::{ApiError, Problems, status as s};
use super::security::BearerAuth;
use super::types::renamed_field;
use super::validate;
use crate::AppState;
use crate::auth::{Principal, Scope};

/// One repository, project or image repository.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Resource {
    /// The provider's id, or the name where it has none.
    pub id: String,
    /// The full name, such as `octo-org/hello-world`.
    pub name: String,
    /// `repository`, `project` or `image_repository`.
    pub kind: String,
    #[oai(nullable)]
    pub url: Option<String>,
}

/// A page of resources, in the provider's order.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ResourcePage {
    pub items: Vec<Resource>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// A webhook to create on the provider.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookCreate {
    /// Where on the provider, such as `owner/repo` for GitHub.
    pub target: String,
    /// The http(s) URL the provider will deliver to.
    pub url: String,
    /// The provider's event names; empty for its default.
    #[oai(default)]
    pub events: Vec<String>,
    /// The signing secret, by reference: `authref://<backend>/<path>[#key]`.
    pub secret_auth_ref: Option<String>,
    /// The former name of `secretAuthRef`, still accepted (not with a different
    /// `secretAuthRef`).
    #[oai(deprecated)]
    pub secret_auth_ref_uri: Option<String>,
}

/// A webhook the provider created.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
}

/// The answer to a webhook set up on the provider: 200, not 201. The hook is the provider's
/// resource, which the hub keeps no copy of and cannot read back for the caller (GitHub lists
/// a repository's hooks only to its admins); so the hub has no URI of its own to give as a
/// `Location`, and a 201 without one would name the request's URI as the created resource.
#[derive(ApiResponse)]
pub enum WebhookCreated {
    /// Set up on the provider: the provider's id of the hook, its delivery URL and events.
    #[oai(status = 200)]
    Created(Json<Webhook>),
}

pub struct ResourcesApi;

/// The live connector of one of the caller's integrations.
async fn connector(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<SharedConnector, ApiError> {
    let m = state
        .store
        .tenant(principal.tenant.clone())
        .integration_get(id)
        .await?;
    state.connector_for(&m).map_err(ApiError::from)
}

// Full paths, no prefix: two OpenApi impls nested at one prefix would shadow each other.
#[OpenApi(tag = "ApiTags::Integrations")]
impl ResourcesApi {
    /// List resources behind an integration
    ///
    /// The repositories, projects or image repositories the integration's credentials can
    /// see, one provider page at a time. 422 for providers that cannot list.
    #[oai(
        path = "/api/v1/integrations/:id/resources",
        method = "get",
        operation_id = "integration_resources_list"
    )]
    async fn integration_resources_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<
        Json<ResourcePage>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND | s::PROVIDER }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let connector = connector(&state, principal, id.0).await?;
        let page = connector
            .list_resources(cursor.0.as_deref().filter(|c| !c.is_empty()))
            .await?;
        Ok(Json(ResourcePage {
            items: page
                .resources
                .into_iter()
                .map(|r| Resource {
                    id: r.id,
                    name: r.name,
                    kind: r.kind.to_owned(),
                    url: r.url,
                })
                .collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// Create a webhook on the provider
    ///
    /// For providers that support it (GitHub App); the signing secret is passed by AuthRef.
    /// 422 for providers that cannot. Answers 200 with the provider's id of the hook: the
    /// hook is the provider's resource (manage it there), so there is no `Location` here.
    #[oai(
        path = "/api/v1/integrations/:id/webhooks",
        method = "post",
        operation_id = "integration_webhook_create"
    )]
    async fn integration_webhook_create(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<WebhookCreate>,
    ) -> Result<
        WebhookCreated,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::BODY | s::NOT_FOUND | s::PROVIDER }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let body = body.0;
        connectors::config::check_http_url("url", &body.url)
            .map_err(|e| ApiError::invalid("url", e.message()))?;
        if body.target.trim().is_empty() {
            return Err(ApiError::invalid("target", "must not be empty").into());
        }
        let secret = validate::auth_ref(
            &state,
            &principal.tenant,
            "secretAuthRef",
            renamed_field(
                "secretAuthRef",
                "secretAuthRefUri",
                body.secret_auth_ref,
                body.secret_auth_ref_uri,
            )?,
        )?;
        let connector = connector(&state, principal, id.0).await?;
        let request = WebhookRequest {
            target: body.target,
            url: body.url,
            events: body.events,
            secret,
        };
        let hook = connector.setup_webhook(&request).await?;
        tracing::info!(message = "Webhook created.", integration_id = %id.0, tenant_id = %principal.tenant);
        Ok(WebhookCreated::Created(Json(Webhook {
            id: hook.id,
            url: hook.url,
            events: hook.events,
        })))
    }
}
