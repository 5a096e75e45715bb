//! The `incident_members` table: the integrations an incident covers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "incident_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub incident_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub integration_id: Uuid,
    pub tenant_id: String,
    /// Why the integration failed when it joined.
    pub reason: Option<String>,
    pub joined_at: DateTimeUtc,
    /// When it was healthy again (while the incident was open).
    pub recovered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
