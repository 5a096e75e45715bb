//! `/api/v1/incidents`: shared outages of the tenant's integrations (see `docs/events.md`,
//! "Incidents").

use std::sync::Arc;

use actors::store::incidents::IncidentQuery;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use uuid::Uuid;

use super::ApiTags;
use super::error::{Problems, status as s};
use super::security::BearerAuth;
use super::types::cursor;
use super::types::incidents::{IncidentDetail, IncidentPage, IncidentState};
use crate::AppState;
use crate::auth::Scope;

pub struct IncidentsApi;

#[OpenApi(prefix_path = "/api/v1/incidents", tag = "ApiTags::Incidents")]
impl IncidentsApi {
    /// List incidents
    ///
    /// The caller's tenant's incidents, open and resolved, newest first, one page at a time:
    /// pass the `nextCursor` of a page as `cursor` to get the next.
    #[oai(path = "/", method = "get", operation_id = "incident_list")]
    async fn incident_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// Only incidents in this state.
        #[oai(name = "state")]
        incident_state: Query<Option<IncidentState>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<IncidentPage>, Problems<{ s::AUTHENTICATED | s::PARAMETERS }>> {
        let principal = auth.require(Scope::Read)?;
        let before = cursor::parse(cursor.0.as_deref(), cursor::decode_uuid)?;
        let page = state
            .store
            .tenant(principal.tenant.clone())
            .incident_list(&IncidentQuery {
                state: incident_state.0.map(Into::into),
                before,
                limit: u64::from(limit.0.unwrap_or(super::integrations::DEFAULT_PAGE_SIZE)),
            })
            .await?;
        Ok(Json(IncidentPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(cursor::encode_uuid),
        }))
    }

    /// Get an incident with its members
    #[oai(path = "/:id", method = "get", operation_id = "incident_get")]
    async fn incident_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<IncidentDetail>, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>>
    {
        let principal = auth.require(Scope::Read)?;
        let (incident, members) = state
            .store
            .tenant(principal.tenant.clone())
            .incident_get(id.0)
            .await?;
        Ok(Json(IncidentDetail {
            incident: incident.into(),
            members: members.into_iter().map(Into::into).collect(),
        }))
    }
}
