//! `/api/v1/integrations`: the catalog.

use std::sync::Arc;

use actors::health::{EngineError, HealthEngine};
use actors::store::health::{HistoryQuery, SummaryQuery};
use actors::{IntegrationChanges, IntegrationQuery, MonitoringChanges, NewIntegration};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::error::{ApiError, ERROR_CODE_UNAVAILABLE, Problem, Problems, status as s};
use super::precondition::IfMatch;
use super::security::BearerAuth;
use super::types::history::{HealthSummaryPage, SummaryGranularity};
use super::types::{
    HealthCheckResult, Integration, IntegrationCreate, IntegrationHealth, IntegrationPage,
    IntegrationStatus, IntegrationUpdate, MonitoringSettings, UptimeWindows, cursor,
};
use super::{ApiTags, validate};
use crate::AppState;
use crate::auth::Scope;

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

#[derive(ApiResponse)]
pub enum IntegrationCreated {
    /// Registered.
    #[oai(status = 201)]
    Created(
        Json<Integration>,
        /// The new integration's URL.
        #[oai(header = "Location")]
        String,
        /// The integration's version.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum IntegrationOk {
    /// The integration.
    #[oai(status = 200)]
    Ok(
        Json<Integration>,
        /// The integration's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum IntegrationDeleted {
    /// Deleted (the audit trail keeps its history).
    #[oai(status = 204)]
    NoContent,
}

fn ok(m: entity::integration::Model) -> IntegrationOk {
    let etag = validate::etag(m.version);
    IntegrationOk::Ok(Json(m.into()), etag)
}

fn page_limit(limit: Option<u32>) -> u64 {
    u64::from(limit.unwrap_or(DEFAULT_PAGE_SIZE))
}

pub struct IntegrationsApi;

#[OpenApi(prefix_path = "/api/v1/integrations", tag = "ApiTags::Integrations")]
impl IntegrationsApi {
    /// List integrations
    ///
    /// The caller's tenant's integrations, oldest first, one page at a time: pass the
    /// `nextCursor` of a page as `cursor` to get the next. `limit` is capped at 200.
    #[oai(path = "/", method = "get", operation_id = "integration_list")]
    async fn integration_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// Only integrations of this provider type.
        #[oai(name = "type")]
        provider_type: Query<Option<String>>,
        /// Only integrations with this health status, such as `unhealthy` (with the reason in
        /// `statusReason`).
        status: Query<Option<IntegrationStatus>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<IntegrationPage>, Problems<{ s::AUTHENTICATED | s::PARAMETERS }>> {
        Ok(list(&state, &auth, provider_type.0, status.0, limit.0, cursor.0).await?)
    }

    /// List integrations of one type
    ///
    /// The same as listing with `?type=`, for consumers (Scanner, Orchestrator, Signals) that
    /// look up connection details by provider type.
    #[oai(
        path = "/by-type/:type",
        method = "get",
        operation_id = "integration_list_by_type"
    )]
    async fn integration_list_by_type(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// The provider type, such as `harbor`.
        #[oai(name = "type")]
        provider_type: Path<String>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<IntegrationPage>, Problems<{ s::AUTHENTICATED | s::PARAMETERS }>> {
        Ok(list(
            &state,
            &auth,
            Some(provider_type.0),
            None,
            limit.0,
            cursor.0,
        )
        .await?)
    }

    /// Get an integration
    #[oai(path = "/:id", method = "get", operation_id = "integration_get")]
    async fn integration_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<IntegrationOk, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>> {
        let principal = auth.require(Scope::Read)?;
        let found = state
            .store
            .tenant(principal.tenant.clone())
            .integration_get(id.0)
            .await?;
        Ok(ok(found))
    }

    /// Register an integration
    ///
    /// Validates the type and its configuration (raw secrets are refused: pass an
    /// `authRef`), stores the integration with status `unknown`, and records the change in
    /// the audit trail.
    #[oai(path = "/", method = "post", operation_id = "integration_create")]
    async fn integration_create(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        /// Test the configuration against the provider first; 422 if it does not work.
        verify: Query<Option<bool>>,
        body: Json<IntegrationCreate>,
    ) -> Result<
        IntegrationCreated,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::BODY | s::CONFLICT | s::PROVIDER }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let body = body.0;
        let new = NewIntegration {
            name: validate::name(&body.name)?,
            config: validate::config(&state, &body.provider_type, body.config).await?,
            auth_ref_uri: validate::integration_auth_ref(
                &state,
                &principal.tenant,
                body.auth_ref,
                body.auth_ref_uri,
            )?,
            provider_type: body.provider_type,
        };
        if verify.0 == Some(true) {
            state
                .verify(
                    &principal.tenant,
                    &new.provider_type,
                    &new.config,
                    new.auth_ref_uri.as_deref(),
                )
                .await?;
        }
        let created = state
            .catalog
            .create(&principal.tenant, &principal.subject, new)
            .await?;
        tracing::info!(
            message = "Integration created.",
            integration_id = %created.id,
            tenant_id = %principal.tenant,
            provider_type = %created.provider_type,
        );
        let location = state.location(&format!("/api/v1/integrations/{}", created.id));
        let etag = validate::etag(created.version);
        Ok(IntegrationCreated::Created(
            Json(created.into()),
            location,
            etag,
        ))
    }

    /// Update an integration
    ///
    /// Replaces the name, configuration and `authRef`. With `If-Match` (the `ETag` of a
    /// read), the update applies only to that version and answers 412 when it is stale.
    #[oai(path = "/:id", method = "put", operation_id = "integration_update")]
    async fn integration_update(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `ETag` this update was based on, or `*`.
        #[oai(name = "If-Match")]
        if_match: IfMatch,
        /// Test the new configuration against the provider first; 422 if it does not work.
        verify: Query<Option<bool>>,
        body: Json<IntegrationUpdate>,
    ) -> Result<
        IntegrationOk,
        Problems<
            {
                s::AUTHENTICATED
                    | s::PARAMETERS
                    | s::BODY
                    | s::NOT_FOUND
                    | s::CONFLICT
                    | s::PRECONDITION_FAILED
                    | s::PROVIDER
            },
        >,
    > {
        let principal = auth.require(Scope::Write)?;
        let precondition = validate::if_match(&if_match)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        let current = tenant.integration_get(id.0).await?;
        let expected_version = precondition
            .expected_version(async { Ok(current.version) })
            .await?;
        let body = body.0;
        if body
            .provider_type
            .as_ref()
            .is_some_and(|t| *t != current.provider_type)
        {
            return Err(ApiError::invalid(
                "type",
                "an integration's type cannot change; register a new integration instead",
            )
            .into());
        }
        let changes = IntegrationChanges {
            name: validate::name(&body.name)?,
            config: validate::config(&state, &current.provider_type, body.config).await?,
            auth_ref_uri: validate::integration_auth_ref(
                &state,
                &principal.tenant,
                body.auth_ref,
                body.auth_ref_uri,
            )?,
            expected_version,
        };
        if verify.0 == Some(true) {
            state
                .verify(
                    &principal.tenant,
                    &current.provider_type,
                    &changes.config,
                    changes.auth_ref_uri.as_deref(),
                )
                .await?;
        }
        let updated = state
            .catalog
            .update(&principal.tenant, &principal.subject, id.0, changes)
            .await?;
        Ok(ok(updated))
    }

    /// Delete an integration
    ///
    /// A soft delete: the integration disappears from every read and its name becomes free,
    /// while the audit trail keeps its history. Honours `If-Match` like an update.
    #[oai(path = "/:id", method = "delete", operation_id = "integration_delete")]
    async fn integration_delete(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `ETag` this delete was based on, or `*`.
        #[oai(name = "If-Match")]
        if_match: IfMatch,
    ) -> Result<
        IntegrationDeleted,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND | s::PRECONDITION_FAILED }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let expected_version = validate::if_match(&if_match)?
            .expected_version(current_version(&state, &principal.tenant, id.0))
            .await?;
        state
            .catalog
            .delete(
                &principal.tenant,
                &principal.subject,
                id.0,
                expected_version,
            )
            .await?;
        Ok(IntegrationDeleted::NoContent)
    }

    /// Run a health check now
    ///
    /// Runs a check of the integration at once (also while monitoring is paused) and answers
    /// with its result, waiting at most the check timeout. The result is recorded in the
    /// history and counts towards the status like a scheduled check.
    #[oai(
        path = "/:id/health-check",
        method = "post",
        operation_id = "integration_health_check"
    )]
    async fn integration_health_check(
        &self,
        state: Data<&Arc<AppState>>,
        req: &poem::Request,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<
        Json<HealthCheckResult>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Write)?;
        state
            .store
            .tenant(principal.tenant.clone())
            .integration_get(id.0)
            .await?;
        let engine = health_engine(&state)?;
        // In a cluster, the replica that owns the integration runs the check.
        if let Some(result) = super::cluster::check_on_owner(&state, req, id.0).await? {
            return Ok(Json(result));
        }
        let result = engine.check_now(id.0).await.map_err(engine_error)?;
        Ok(Json(result.into()))
    }

    /// Get health status and history
    ///
    /// The live state of the integration's monitor (status, reason, last check, consecutive
    /// counts, next scheduled check), uptime over 24 hours, 7 days and 30 days, and a page of
    /// stored results, newest first.
    #[oai(
        path = "/:id/health",
        method = "get",
        operation_id = "integration_health_get"
    )]
    async fn integration_health_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
        /// Only results checked at or after this time (RFC 3339).
        since: Query<Option<chrono::DateTime<chrono::Utc>>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<
        Json<IntegrationHealth>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        let integration = tenant.integration_get(id.0).await?;
        let before = cursor::parse(cursor.0.as_deref(), cursor::decode_time)?;
        let live = match &state.health {
            Some(engine) => engine.status(id.0).await.ok(),
            None => None,
        };
        // Checks a monitor holds back until its hour's sample is stored count too.
        let pending = live.as_ref().map(|l| l.pending).unwrap_or_default();
        let uptime = tenant
            .uptime_with(id.0, chrono::Utc::now(), pending)
            .await?;
        let history = tenant
            .health_history(
                id.0,
                &HistoryQuery {
                    since: since.0,
                    before,
                    limit: page_limit(limit.0),
                },
            )
            .await?;
        let interval_seconds = integration
            .check_interval_seconds
            .map(i64::from)
            .or_else(|| {
                state
                    .health
                    .as_ref()
                    .map(|e| e.default_interval().as_secs() as i64)
            })
            .unwrap_or_default();
        let (status, status_reason) = match &live {
            Some(l) => (
                IntegrationStatus::from_engine(l.status),
                l.reason.map(|r| r.as_str().to_owned()),
            ),
            None => (
                Integration::from(integration.clone()).status,
                integration.status_reason.clone(),
            ),
        };
        Ok(Json(IntegrationHealth {
            status,
            status_reason,
            last_check: live.as_ref().and_then(|l| l.last.clone()).map(Into::into),
            consecutive_failures: live.as_ref().map_or(0, |l| l.consecutive_failures),
            consecutive_successes: live.as_ref().map_or(0, |l| l.consecutive_successes),
            next_check_at: live.as_ref().and_then(|l| l.next_check_at),
            check_in_flight: live.as_ref().is_some_and(|l| l.check_in_flight),
            monitoring_paused: integration.monitoring_paused,
            interval_seconds,
            uptime: UptimeWindows {
                last24h: uptime.last_24h,
                last7d: uptime.last_7d,
                last30d: uptime.last_30d,
            },
            history: history.items.into_iter().map(Into::into).collect(),
            next_cursor: history.next.map(cursor::encode_time),
        }))
    }

    /// List health summaries
    ///
    /// Hourly or daily summaries of the integration's checks, oldest first, for uptime and
    /// latency charts: per period the checks, failures, uptime and latency percentiles. An
    /// hour is summarised a few minutes after it ends; hourly summaries are rolled up into
    /// daily ones after `summary_rollup_days` (14 by default), and daily ones are kept for
    /// `summary_retention_days` (90).
    #[oai(
        path = "/:id/health/summaries",
        method = "get",
        operation_id = "integration_health_summary_list"
    )]
    #[allow(clippy::too_many_arguments)] // one per path and query parameter
    async fn integration_health_summary_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
        /// `hour` (the default) or `day`.
        granularity: Query<Option<SummaryGranularity>>,
        /// Only periods starting at or after this time (RFC 3339).
        since: Query<Option<chrono::DateTime<chrono::Utc>>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<
        Json<HealthSummaryPage>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        tenant.integration_get(id.0).await?;
        let after = cursor::parse(cursor.0.as_deref(), cursor::decode_time)?;
        let granularity = granularity.0.unwrap_or(SummaryGranularity::Hour);
        let page = tenant
            .health_summaries(
                id.0,
                &SummaryQuery {
                    granularity: granularity.into(),
                    since: since.0,
                    after,
                    limit: page_limit(limit.0),
                },
            )
            .await?;
        Ok(Json(HealthSummaryPage {
            granularity,
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(cursor::encode_time),
        }))
    }

    /// Pause, resume or reschedule monitoring
    ///
    /// Sets whether scheduled checks run and at what interval (null: the daemon's default).
    /// The monitor is rescheduled at once. Honours `If-Match` like an update, and is audited.
    #[oai(
        path = "/:id/monitoring",
        method = "put",
        operation_id = "integration_monitoring_set"
    )]
    async fn integration_monitoring_set(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `ETag` this change was based on, or `*`.
        #[oai(name = "If-Match")]
        if_match: IfMatch,
        body: Json<MonitoringSettings>,
    ) -> Result<
        IntegrationOk,
        Problems<
            { s::AUTHENTICATED | s::PARAMETERS | s::BODY | s::NOT_FOUND | s::PRECONDITION_FAILED },
        >,
    > {
        let principal = auth.require(Scope::Write)?;
        let precondition = validate::if_match(&if_match)?;
        if let Some(seconds) = body.0.interval_seconds
            && !(validate::MIN_INTERVAL_SECONDS..=validate::MAX_INTERVAL_SECONDS).contains(&seconds)
        {
            return Err(ApiError::invalid(
                "intervalSeconds",
                format!(
                    "must be from {} to {}",
                    validate::MIN_INTERVAL_SECONDS,
                    validate::MAX_INTERVAL_SECONDS
                ),
            )
            .into());
        }
        let expected_version = precondition
            .expected_version(current_version(&state, &principal.tenant, id.0))
            .await?;
        let changes = MonitoringChanges {
            paused: Some(body.0.paused),
            interval_seconds: Some(body.0.interval_seconds),
            expected_version,
        };
        let updated = state
            .catalog
            .set_monitoring(&principal.tenant, &principal.subject, id.0, changes)
            .await?;
        Ok(ok(updated))
    }
}

/// The current version of the tenant's integration `id`, for an `If-Match` naming several.
async fn current_version(
    state: &AppState,
    tenant: &actors::TenantId,
    id: Uuid,
) -> Result<i64, ApiError> {
    let current = state
        .store
        .tenant(tenant.clone())
        .integration_get(id)
        .await?;
    Ok(current.version)
}

fn health_engine(state: &AppState) -> Result<&HealthEngine, ApiError> {
    state.health.as_ref().ok_or_else(|| {
        ApiError::from_problem(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ERROR_CODE_UNAVAILABLE,
            "the health engine is disabled in this daemon's configuration".to_owned(),
        ))
    })
}

fn engine_error(e: EngineError) -> ApiError {
    let detail = match e {
        EngineError::NoMonitor => {
            "the integration's monitor is not running (it is starting, or restarting after repeated failures); retry later"
        }
        _ => "the integration's monitor did not answer in time; retry later",
    };
    ApiError::from_problem(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ERROR_CODE_UNAVAILABLE,
        detail.to_owned(),
    ))
}

async fn list(
    state: &AppState,
    auth: &BearerAuth,
    provider_type: Option<String>,
    status: Option<IntegrationStatus>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Json<IntegrationPage>, ApiError> {
    let principal = auth.require(Scope::Read)?;
    let after = cursor::parse(cursor.as_deref(), cursor::decode_uuid)?;
    let page = state
        .store
        .tenant(principal.tenant.clone())
        .integration_list(&IntegrationQuery {
            provider_type,
            status: status.map(|s| s.as_db().to_owned()),
            after,
            limit: page_limit(limit),
        })
        .await?;
    Ok(Json(IntegrationPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(cursor::encode_uuid),
    }))
}
