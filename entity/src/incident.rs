//! The `incidents` table: one shared outage of a tenant's integrations behind one failure
//! domain (a provider endpoint, the secret backend, the hub's egress).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    /// A UUIDv7: ids sort by opening time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    /// `provider`, `vault` or `egress`.
    pub domain_kind: String,
    /// The endpoint (`scheme://host:port`), the vault address, or `hub` for the egress.
    pub domain_value: String,
    /// The failure reason most members share (`network`, `timeout`, …).
    pub reason: String,
    /// `open` or `resolved`.
    pub state: String,
    pub title: String,
    /// Integrations that took part, ever.
    pub member_count: i64,
    /// Members failing at the last update.
    pub failing_count: i64,
    pub opened_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
