//! `/api/v1/audit`: the tenant's audit trail.

use std::sync::Arc;

use actors::AuditQuery;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use uuid::Uuid;

use super::ApiTags;
use super::error::{ApiError, Problems, status as s};
use super::security::BearerAuth;
use super::types::{AuditPage, cursor};
use crate::AppState;
use crate::auth::Scope;

pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1/audit", tag = "ApiTags::Audit")]
impl AuditApi {
    /// List the audit trail
    ///
    /// Every change to the caller's tenant's integrations, newest first: who, what, when, and
    /// the redacted state before and after.
    #[oai(path = "/", method = "get", operation_id = "audit_list")]
    async fn audit_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// Only records of this integration (deleted ones included).
        #[oai(name = "integrationId")]
        integration_id: Query<Option<String>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<AuditPage>, Problems<{ s::AUTHENTICATED | s::PARAMETERS }>> {
        let principal = auth.require(Scope::Read)?;
        let integration_id = match integration_id.0.as_deref() {
            None | Some("") => None,
            Some(id) => Some(
                id.parse::<Uuid>()
                    .map_err(|_| ApiError::bad_request("integrationId: not a UUID"))?,
            ),
        };
        let before = cursor::parse(cursor.0.as_deref(), cursor::decode_i64)?;
        let page = state
            .store
            .tenant(principal.tenant.clone())
            .audit_list(&AuditQuery {
                integration_id,
                before,
                limit: u64::from(limit.0.unwrap_or(super::integrations::DEFAULT_PAGE_SIZE)),
            })
            .await?;
        Ok(Json(AuditPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(cursor::encode_i64),
        }))
    }
}
