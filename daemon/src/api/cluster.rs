//! `/api/v1/cluster`: the replicas of a cluster and what each owns; and the forwarding of an
//! on-demand check to the replica that owns the integration.

use std::collections::HashMap;
use std::sync::Arc;

use actors::cluster::{ClusterView, shard_of};
use actors::store::cluster::{LEADER, shard_of_lease};
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::ParseFromJSON;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::error::{ApiError, ERROR_CODE_UNAVAILABLE, Problem, Problems, status as s};
use super::security::BearerAuth;
use super::types::HealthCheckResult;
use crate::AppState;
use crate::auth::Scope;

/// Marks a request one replica forwarded to another (it is never forwarded again).
pub const FORWARDED_HEADER: &str = "x-stella-forwarded-by";

/// One replica of the cluster.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ClusterReplica {
    pub id: String,
    /// How the other replicas reach its API.
    #[oai(nullable)]
    pub advertise_url: Option<String>,
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat, on the database clock.
    pub heartbeat_at: DateTime<Utc>,
    /// Shards whose lease it holds now.
    pub shards_owned: u32,
    /// Whether it holds the leader lease (cluster-wide duties: summaries, retention, event
    /// relays).
    pub leader: bool,
}

/// The cluster as the database sees it now.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Live replicas (a heartbeat within the lease period), oldest first.
    pub replicas: Vec<ClusterReplica>,
    /// How many shards the fleet is split into.
    pub shards: u32,
    /// The leader lease's epoch: it grows by one at every change of leader.
    pub epoch: i64,
}

pub struct ClusterApi;

#[OpenApi(prefix_path = "/api/v1/cluster", tag = "ApiTags::System")]
impl ClusterApi {
    /// Get the cluster's replicas
    ///
    /// The live replicas of the cluster this daemon belongs to, the shards each owns and which
    /// is the leader. 404 when `[cluster] enabled` is off (a single process owns everything).
    #[oai(path = "/", method = "get", operation_id = "cluster_get")]
    async fn cluster_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Admin")] auth: BearerAuth,
    ) -> Result<Json<ClusterStatus>, Problems<{ s::AUTHENTICATED | s::NOT_FOUND }>> {
        auth.require(Scope::Admin)?;
        let Some(cluster) = &state.cluster else {
            return Err(
                ApiError::not_found("this daemon runs alone: [cluster] enabled is off").into(),
            );
        };
        let store = state.store.cluster();
        let ttl = cluster.lease_ttl.as_secs_f64();
        let (replicas, leases) = tokio::try_join!(store.live_replicas(ttl), store.leases())
            .map_err(|error| {
                tracing::warn!(message = "Reading the cluster failed.", %error);
                unavailable("the cluster's tables cannot be read now")
            })?;
        let now = Utc::now();
        let mut owned: HashMap<&str, u32> = HashMap::new();
        let mut leader = None;
        let mut epoch = 0;
        for lease in &leases {
            let live = lease.expires_at.is_some_and(|at| at > now);
            if lease.name == LEADER {
                epoch = lease.epoch;
                leader = lease.holder.as_deref().filter(|_| live);
            } else if live
                && shard_of_lease(&lease.name).is_some()
                && let Some(holder) = &lease.holder
            {
                *owned.entry(holder.as_str()).or_default() += 1;
            }
        }
        Ok(Json(ClusterStatus {
            replicas: replicas
                .into_iter()
                .map(|r| ClusterReplica {
                    shards_owned: owned.get(r.id.as_str()).copied().unwrap_or(0),
                    leader: leader == Some(r.id.as_str()),
                    id: r.id,
                    advertise_url: r.advertise_url,
                    started_at: r.started_at,
                    heartbeat_at: r.heartbeat_at,
                })
                .collect(),
            shards: cluster.view.shards,
            epoch,
        }))
    }
}

/// What the API knows of the cluster this daemon belongs to.
pub struct ClusterState {
    pub view: ClusterView,
    pub lease_ttl: std::time::Duration,
    /// Calls to the other replicas (forwarded checks).
    pub client: reqwest::Client,
}

fn unavailable(detail: &str) -> ApiError {
    ApiError::from_problem(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ERROR_CODE_UNAVAILABLE,
        detail.to_owned(),
    ))
}

/// Runs an on-demand check on the replica that owns the integration, with the caller's own
/// credentials, and answers with its result. `None` when this replica should run it itself
/// (it owns the integration, or the request was already forwarded).
///
/// # Errors
/// 503 when no replica owns the shard now, or the owner cannot be reached.
pub async fn check_on_owner(
    state: &AppState,
    req: &poem::Request,
    id: Uuid,
) -> Result<Option<HealthCheckResult>, ApiError> {
    let Some(cluster) = &state.cluster else {
        return Ok(None);
    };
    if cluster.view.owns(id) || req.headers().contains_key(FORWARDED_HEADER) {
        return Ok(None);
    }
    let shard = shard_of(id, cluster.view.shards);
    let owner = state
        .store
        .cluster()
        .owner_url(shard)
        .await
        .map_err(|error| {
            tracing::warn!(message = "Finding the owner of a shard failed.", %error);
            unavailable("the cluster's tables cannot be read now")
        })?
        .ok_or_else(|| {
            unavailable("no replica owns this integration right now (a takeover is under way); retry in a few seconds")
        })?;
    let url = format!(
        "{}/api/v1/integrations/{id}/health-check",
        owner.trim_end_matches('/')
    );
    let mut forward = cluster
        .client
        .post(url)
        .header(FORWARDED_HEADER, &*cluster.view.replica)
        .json(&serde_json::json!({}));
    if let Some(authorization) = req.headers().get(poem::http::header::AUTHORIZATION) {
        forward = forward.header(reqwest::header::AUTHORIZATION, authorization.as_bytes());
    }
    let answer = forward.send().await.map_err(|error| {
        tracing::warn!(message = "Forwarding a check to its owner failed.", %error);
        unavailable("the replica that owns this integration cannot be reached; retry later")
    })?;
    let status = answer.status();
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|_| unavailable("the owning replica's answer does not parse"))?;
    if !status.is_success() {
        return Err(ApiError::from_problem(Problem::new(
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            body["code"].as_str().unwrap_or(ERROR_CODE_UNAVAILABLE),
            body["detail"]
                .as_str()
                .unwrap_or("the owning replica refused the check")
                .to_owned(),
        )));
    }
    HealthCheckResult::parse_from_json(Some(body))
        .map(Some)
        .map_err(|_| unavailable("the owning replica's answer does not parse"))
}
