//! `/api/v1/integrations/{id}/maintenance-windows`: periods in which an integration is still
//! checked and its results recorded, but its alerts are held.

use std::sync::Arc;

use actors::events::maintenance::{InvalidWindow, Recurrence};
use actors::store::maintenance::{NewMaintenanceWindow, window_of};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::error::{ApiError, Problems, status as s};
use super::security::BearerAuth;
use crate::AppState;
use crate::auth::Scope;

/// Longest `reason`.
pub const MAX_REASON_CHARS: usize = 500;

/// How a window repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WindowRecurrence {
    /// Every day at the same time as the first occurrence.
    Daily,
    /// Every week at the same time as the first occurrence.
    Weekly,
}

impl From<WindowRecurrence> for Recurrence {
    fn from(r: WindowRecurrence) -> Self {
        match r {
            WindowRecurrence::Daily => Recurrence::Daily,
            WindowRecurrence::Weekly => Recurrence::Weekly,
        }
    }
}

/// A maintenance window to create.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindowCreate {
    /// Start of the (first) window.
    pub starts_at: DateTime<Utc>,
    /// End of the (first) window; after `startsAt`.
    pub ends_at: DateTime<Utc>,
    /// Repeat the window; shorter than its period.
    pub recurrence: Option<WindowRecurrence>,
    /// No recurrence starts at or after this time.
    pub until: Option<DateTime<Utc>>,
    /// Why (shown to people; at most 500 characters).
    pub reason: Option<String>,
}

/// A maintenance window.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[oai(nullable)]
    pub recurrence: Option<WindowRecurrence>,
    #[oai(nullable)]
    pub until: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub reason: Option<String>,
    /// The subject of the token that created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Whether an occurrence is active now.
    pub active: bool,
    /// End of the active occurrence.
    #[oai(nullable)]
    pub active_until: Option<DateTime<Utc>>,
}

impl From<entity::maintenance_window::Model> for MaintenanceWindow {
    fn from(m: entity::maintenance_window::Model) -> Self {
        let active_until = window_of(&m).active_until(Utc::now());
        Self {
            id: m.id,
            integration_id: m.integration_id,
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            recurrence: match m.recurrence.as_deref() {
                Some("daily") => Some(WindowRecurrence::Daily),
                Some("weekly") => Some(WindowRecurrence::Weekly),
                _ => None,
            },
            until: m.until,
            reason: m.reason,
            created_by: m.created_by,
            created_at: m.created_at,
            active: active_until.is_some(),
            active_until,
        }
    }
}

/// The maintenance windows of an integration.
#[derive(Debug, Clone, Object)]
pub struct MaintenanceWindowList {
    pub items: Vec<MaintenanceWindow>,
}

#[derive(ApiResponse)]
pub enum WindowCreated {
    /// Created.
    #[oai(status = 201)]
    Created(
        Json<MaintenanceWindow>,
        /// The new window's URL.
        #[oai(header = "Location")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum WindowDeleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

fn invalid(e: &InvalidWindow) -> ApiError {
    let field = match e {
        InvalidWindow::EndsBeforeStart | InvalidWindow::LongerThanPeriod(_) => "endsAt",
        InvalidWindow::UntilBeforeStart => "until",
    };
    ApiError::invalid(field, e.to_string())
}

pub struct MaintenanceApi;

#[OpenApi(tag = "ApiTags::Integrations")]
impl MaintenanceApi {
    /// Create a maintenance window
    ///
    /// While a window is active the integration is still checked and its results and status
    /// recorded, but no alert event is emitted for it; when the window ends, one event tells
    /// the status if it changed. Recorded in the audit trail.
    #[oai(
        path = "/api/v1/integrations/:id/maintenance-windows",
        method = "post",
        operation_id = "maintenance_window_create"
    )]
    async fn maintenance_window_create(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<MaintenanceWindowCreate>,
    ) -> Result<
        WindowCreated,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::BODY | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let body = body.0;
        if body
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(ApiError::invalid(
                "reason",
                format!("at most {MAX_REASON_CHARS} characters"),
            )
            .into());
        }
        let new = NewMaintenanceWindow {
            starts_at: body.starts_at,
            ends_at: body.ends_at,
            recurrence: body.recurrence.map(Into::into),
            until: body.until,
            reason: body.reason,
        };
        let shape = actors::events::maintenance::Window {
            id: Uuid::nil(),
            integration_id: id.0,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            recurrence: new.recurrence,
            until: new.until,
        };
        shape.validate().map_err(|e| invalid(&e))?;
        let created = state
            .catalog
            .window_create(&principal.tenant, &principal.subject, id.0, new)
            .await?;
        let location = state.location(&format!(
            "/api/v1/integrations/{}/maintenance-windows/{}",
            id.0, created.id
        ));
        Ok(WindowCreated::Created(Json(created.into()), location))
    }

    /// List maintenance windows
    #[oai(
        path = "/api/v1/integrations/:id/maintenance-windows",
        method = "get",
        operation_id = "maintenance_window_list"
    )]
    async fn maintenance_window_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<
        Json<MaintenanceWindowList>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let rows = state
            .store
            .tenant(principal.tenant.clone())
            .maintenance_list(id.0)
            .await?;
        Ok(Json(MaintenanceWindowList {
            items: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// Get a maintenance window
    ///
    /// One window of the integration, with whether an occurrence is active now.
    #[oai(
        path = "/api/v1/integrations/:id/maintenance-windows/:windowId",
        method = "get",
        operation_id = "maintenance_window_get"
    )]
    async fn maintenance_window_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "windowId")] window_id: Path<Uuid>,
    ) -> Result<
        Json<MaintenanceWindow>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let window = state
            .store
            .tenant(principal.tenant.clone())
            .maintenance_get(id.0, window_id.0)
            .await?;
        Ok(Json(window.into()))
    }

    /// Delete a maintenance window
    ///
    /// Alerts held by it, if it is active, are released at once. Recorded in the audit trail.
    #[oai(
        path = "/api/v1/integrations/:id/maintenance-windows/:windowId",
        method = "delete",
        operation_id = "maintenance_window_delete"
    )]
    async fn maintenance_window_delete(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "windowId")] window_id: Path<Uuid>,
    ) -> Result<WindowDeleted, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>> {
        let principal = auth.require(Scope::Write)?;
        state
            .catalog
            .window_delete(&principal.tenant, &principal.subject, id.0, window_id.0)
            .await?;
        Ok(WindowDeleted::NoContent)
    }
}
