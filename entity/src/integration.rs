//! The `integrations` table: one row per registered integration.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    /// UUIDv7: ids sort by creation time, which gives list pagination a stable order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    /// Provider type, such as `github_app` or `harbor`.
    #[sea_orm(column_name = "type")]
    pub provider_type: String,
    pub name: String,
    /// Provider configuration; never holds a secret (the API refuses them).
    pub config_json: Json,
    /// `authref://<backend>/<path>[#key]`, resolved at use time.
    pub auth_ref_uri: Option<String>,
    /// `unknown`, `healthy`, `degraded`, `unhealthy`, `paused` or `error`.
    pub status: String,
    /// Machine-readable reason of the last non-healthy status.
    pub status_reason: Option<String>,
    pub last_checked_at: Option<DateTimeUtc>,
    /// Monitoring is paused: no scheduled checks, status `paused`.
    pub monitoring_paused: bool,
    /// Per-integration check interval; the daemon's default when `None`.
    pub check_interval_seconds: Option<i32>,
    /// Optimistic-concurrency version, exposed as the ETag.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Set by a delete; such rows are invisible to every read but kept for the audit trail.
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
