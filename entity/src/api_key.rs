//! The `api_keys` table: keys the daemon generated itself. Only the SHA-256 of a key is stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// Lower-case hex SHA-256 of the key.
    #[sea_orm(unique)]
    pub key_sha256: String,
    /// A JSON array of scope names.
    pub scopes: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
