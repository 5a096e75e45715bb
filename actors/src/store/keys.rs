//! API keys: the keys a tenant manages through the API, and the bootstrap key the daemon
//! generates at first start. Only a key's SHA-256 is stored.
//!
//! Managing keys is tenant business ([`TenantStore`], audited, row-level security on
//! PostgreSQL). Authentication is not: a key is how a tenant is found, so it is looked up by
//! digest through the [`SystemStore`]. Deleting a key announces its id on
//! [`API_KEYS_CHANNEL`] in the deleting transaction (PostgreSQL delivers it at commit), so
//! every replica drops the key from its cache at once.

use chrono::{DateTime, Utc};
use entity::api_key::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use serde_json::json;

use super::{Store, SystemStore, TenantStore, audit};
use crate::error::CatalogError;

/// The PostgreSQL notification channel on which deleted keys' ids are announced.
pub const API_KEYS_CHANNEL: &str = "stella_api_keys";

/// Most keys one tenant may hold in the database (configured keys are not counted).
pub const MAX_KEYS_PER_TENANT: u64 = 100;

/// A key to store: its digest, never the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub name: Option<String>,
    /// Lower-case hex SHA-256 of the key.
    pub key_sha256: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the audit trail says of a key: never its digest.
fn details(m: &Model) -> serde_json::Value {
    json!({
        "id": m.id,
        "name": m.name,
        "scopes": m.scopes,
        "expiresAt": m.expires_at,
    })
}

impl Store {
    /// Whether any key is stored, in any tenant (the bootstrap key is generated only when none is).
    ///
    /// # Errors
    /// [`DbErr`] when the table cannot be read.
    pub async fn api_keys_exist(&self) -> Result<bool, DbErr> {
        let txn = super::begin_all_tenants(&self.db, false).await?;
        let found = Entity::find().one(&txn).await?.is_some();
        txn.commit().await?;
        Ok(found)
    }

    /// Stores a generated key's digest (the bootstrap key; not audited: no one asked for it).
    ///
    /// # Errors
    /// [`DbErr`] when the row cannot be written.
    pub async fn api_key_insert(&self, key: Model) -> Result<(), DbErr> {
        let txn = super::begin_all_tenants(&self.db, true).await?;
        let row = ActiveModel {
            id: Set(key.id),
            tenant_id: Set(key.tenant_id),
            key_sha256: Set(key.key_sha256),
            scopes: Set(key.scopes),
            created_at: Set(key.created_at),
            name: Set(key.name),
            expires_at: Set(key.expires_at),
            last_used_at: Set(key.last_used_at),
            created_by: Set(key.created_by),
            expiry_warned_at: Set(key.expiry_warned_at),
        };
        Entity::insert(row).exec_without_returning(&txn).await?;
        txn.commit().await
    }
}

// === impl SystemStore ===

impl SystemStore {
    /// The stored key with this digest, in any tenant.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn api_key_by_digest(&self, sha256_hex: &str) -> Result<Option<Model>, DbErr> {
        let txn = self.begin().await?;
        let row = Entity::find()
            .filter(Column::KeySha256.eq(sha256_hex))
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Records when keys were last used: one statement per key, in one transaction. A key
    /// deleted meanwhile is skipped (no row to update).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn api_keys_touch(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), DbErr> {
        if used.is_empty() {
            return Ok(());
        }
        let txn = super::begin_all_tenants(&self.db, true).await?;
        for (id, at) in used {
            Entity::update_many()
                .col_expr(Column::LastUsedAt, (*at).into())
                .filter(Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await
    }

    /// Claims the keys of any tenant that expire within `(now, horizon]` and have not been
    /// warned about: each is marked warned in this transaction, and only the rows this call
    /// marked are returned, so replicas scanning at once warn about each key once.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn api_keys_claim_expiring(
        &self,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<Model>, DbErr> {
        let txn = super::begin_all_tenants(&self.db, true).await?;
        let candidates = Entity::find()
            .filter(Column::ExpiresAt.gt(now))
            .filter(Column::ExpiresAt.lte(horizon))
            .filter(Column::ExpiryWarnedAt.is_null())
            .order_by_asc(Column::ExpiresAt)
            .all(&txn)
            .await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for row in candidates {
            let marked = Entity::update_many()
                .col_expr(Column::ExpiryWarnedAt, now.into())
                .filter(Column::Id.eq(row.id.as_str()))
                .filter(Column::ExpiryWarnedAt.is_null())
                .exec(&txn)
                .await?;
            if marked.rows_affected == 1 {
                claimed.push(row);
            }
        }
        txn.commit().await?;
        Ok(claimed)
    }
}

// === impl TenantStore ===

impl TenantStore {
    /// The tenant's stored keys, oldest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn api_key_list(&self) -> Result<Vec<Model>, CatalogError> {
        Ok(self
            .read_all(
                Entity::find()
                    .filter(Column::TenantId.eq(self.tenant.as_str()))
                    .order_by_asc(Column::CreatedAt)
                    .order_by_asc(Column::Id),
            )
            .await?)
    }

    /// One of the tenant's stored keys.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn api_key_get(&self, id: &str) -> Result<Option<Model>, CatalogError> {
        Ok(self
            .read_one(
                Entity::find()
                    .filter(Column::TenantId.eq(self.tenant.as_str()))
                    .filter(Column::Id.eq(id)),
            )
            .await?)
    }

    /// Stores a new key of the tenant and records it in the audit trail (without its digest),
    /// in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::Conflict`] when the tenant holds [`MAX_KEYS_PER_TENANT`] keys already.
    pub async fn api_key_create(&self, actor: &str, new: NewApiKey) -> Result<Model, CatalogError> {
        let txn = self.begin(true).await?;
        let held = Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .count(&txn)
            .await?;
        if held >= MAX_KEYS_PER_TENANT {
            return Err(CatalogError::Conflict {
                field: "apiKeys",
                message: format!(
                    "a tenant holds at most {MAX_KEYS_PER_TENANT} API keys; delete one first"
                ),
            });
        }
        let row = ActiveModel {
            id: Set(new.id),
            tenant_id: Set(self.tenant.as_str().to_owned()),
            key_sha256: Set(new.key_sha256),
            scopes: Set(json!(new.scopes)),
            created_at: Set(Utc::now()),
            name: Set(new.name),
            expires_at: Set(new.expires_at),
            last_used_at: Set(None),
            created_by: Set(Some(actor.to_owned())),
            expiry_warned_at: Set(None),
        };
        let created = row.insert(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            super::audit::action::API_KEY_CREATE,
            None,
            json!({ "after": details(&created) }),
        )
        .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Deletes one of the tenant's keys, records it in the audit trail and announces it to
    /// every replica, in one transaction. `None` when the tenant has no such key.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn api_key_delete(
        &self,
        actor: &str,
        id: &str,
    ) -> Result<Option<Model>, CatalogError> {
        let txn = self.begin(true).await?;
        let Some(found) = Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::Id.eq(id))
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        Entity::delete_many()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::Id.eq(id))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            self,
            actor,
            super::audit::action::API_KEY_DELETE,
            None,
            json!({ "before": details(&found) }),
        )
        .await?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [API_KEYS_CHANNEL.into(), id.into()],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(Some(found))
    }
}
