//! API keys the daemon generated itself. Not tenant data: a key is how a tenant is found.

use entity::api_key::{ActiveModel, Entity, Model};
use sea_orm::{ActiveValue::Set, DbErr, EntityTrait};

use super::Store;

impl Store {
    /// Every stored API key (their digests, never the keys).
    ///
    /// # Errors
    /// [`DbErr`] when the table cannot be read.
    pub async fn api_keys(&self) -> Result<Vec<Model>, DbErr> {
        Entity::find().all(&self.db).await
    }

    /// Stores a generated key's digest.
    ///
    /// # Errors
    /// [`DbErr`] when the row cannot be written.
    pub async fn api_key_insert(&self, key: Model) -> Result<(), DbErr> {
        let row = ActiveModel {
            id: Set(key.id),
            tenant_id: Set(key.tenant_id),
            key_sha256: Set(key.key_sha256),
            scopes: Set(key.scopes),
            created_at: Set(key.created_at),
        };
        Entity::insert(row).exec_without_returning(&self.db).await?;
        Ok(())
    }
}
