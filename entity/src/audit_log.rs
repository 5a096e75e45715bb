//! The `audit_logs` table: the audit trail of catalog changes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_logs")]
pub struct Model {
    /// Monotonic, so the trail pages in the order it was written.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    /// The subject of the token that made the change.
    pub actor: String,
    /// `integration.create`, `integration.update` or `integration.delete`.
    pub action: String,
    pub integration_id: Option<Uuid>,
    pub timestamp: DateTimeUtc,
    /// `{"before": .., "after": ..}`, with secret-looking values redacted.
    pub details: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
