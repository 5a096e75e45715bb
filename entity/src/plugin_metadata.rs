//! The `plugin_metadata` table: connector plugins known to the registry.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "plugin_metadata")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub plugin_id: String,
    /// The provider type the plugin serves; unique among plugins.
    #[sea_orm(column_name = "type")]
    pub provider_type: String,
    pub version: String,
    /// A JSON array of capability names.
    pub capabilities: Json,
    /// Where an external plugin was found; `None` for built-ins.
    pub path: Option<String>,
    pub discovered_at: DateTimeUtc,
    /// For external plugins: SHA-256 of manifest, schema and executable.
    pub fingerprint: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
