//! The `maintenance_windows` table: periods in which an integration is still checked and its
//! results recorded, but its alerts are held.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "maintenance_windows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub integration_id: Uuid,
    /// The first (or only) occurrence.
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    /// `daily` or `weekly` to repeat the first occurrence; `None` for a single window.
    pub recurrence: Option<String>,
    /// No occurrence of a recurring window starts at or after this time.
    pub until: Option<DateTimeUtc>,
    pub reason: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
