//! The `api_keys` table: keys the daemon generated, at first start or through
//! `/api/v1/api-keys`. Only the SHA-256 of a key is stored; the key itself is shown once.

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
    /// A name for people; `None` for the bootstrap key.
    pub name: Option<String>,
    /// After this time the key is refused.
    pub expires_at: Option<DateTimeUtc>,
    /// When the key was last used, to within a minute (recorded off the request path).
    pub last_used_at: Option<DateTimeUtc>,
    /// The subject that created the key; `None` for the bootstrap key.
    pub created_by: Option<String>,
    /// When the warning that the key expires soon was emitted (once per key).
    pub expiry_warned_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
