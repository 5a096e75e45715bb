//! The `health_checks` table: the history of health-check results.
//!
//! On PostgreSQL the table is partitioned by day on `checked_at` (see
//! `actors::store::health::partitions`), and has no surrogate key: results are read by
//! integration and time, through one composite index per partition. The primary key declared
//! here is the model's identity for sea-orm only; no constraint enforces it in the database.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "health_checks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub integration_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub checked_at: DateTimeUtc,
    /// Denormalised from the integration so that row-level security can filter it.
    pub tenant_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub latency_ms: i64,
    pub error_message: Option<String>,
    /// With `raw_history = "changes"`: the checks of the same hour this result stands for
    /// besides itself, which were not stored one by one, as
    /// `{"failures": n, "latencies": [ms, …]}` (counted checks only; the first `failures` of
    /// them failed). Null for a result that stands for itself alone.
    #[sea_orm(column_type = "Json", nullable)]
    pub folded: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
