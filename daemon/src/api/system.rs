//! Probes for orchestrators: liveness and readiness. No authentication.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::payload::Json;

use super::ApiTags;
use super::error::{ApiError, ERROR_CODE_UNAVAILABLE, Problem, Problems, status as s};
use super::types::ProbeStatus;
use crate::AppState;

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(path = "/healthz", method = "get", operation_id = "system_live")]
    async fn system_live(&self) -> Json<ProbeStatus> {
        Json(ProbeStatus {
            status: "ok".into(),
        })
    }

    /// Readiness
    ///
    /// 200 when the database answers and every migration is applied (and, in a cluster, this
    /// replica renews its leases in time); 503 otherwise.
    #[oai(path = "/readyz", method = "get", operation_id = "system_ready")]
    async fn system_ready(
        &self,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<ProbeStatus>, Problems<{ s::UNAVAILABLE }>> {
        let unavailable = |detail: &str| {
            ApiError::from_problem(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ERROR_CODE_UNAVAILABLE,
                detail.to_owned(),
            ))
        };
        if state.cluster.as_ref().is_some_and(|c| !c.view.renewing()) {
            return Err(unavailable(
                "this replica cannot renew its cluster leases (the database is unreachable or slow)",
            )
            .into());
        }
        match state.store.is_migrated().await {
            Ok(true) => Ok(Json(ProbeStatus {
                status: "ok".into(),
            })),
            Ok(false) => Err(unavailable("migrations are pending").into()),
            Err(error) => {
                tracing::warn!(message = "Readiness check failed.", %error);
                Err(unavailable("the database is unreachable").into())
            }
        }
    }
}
