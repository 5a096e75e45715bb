//! The `health_checks` table: the history of health-check results.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "health_checks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: Uuid,
    /// Denormalised from the integration so that row-level security can filter it.
    pub tenant_id: String,
    pub checked_at: DateTimeUtc,
    pub status: String,
    pub reason: Option<String>,
    pub latency_ms: i64,
    pub error_message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
