//! The audit trail: written in the same transaction as the change it records.

use chrono::Utc;
use entity::audit_log::{ActiveModel, Column, Entity};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::{MAX_PAGE_SIZE, Page, TenantStore};
use crate::error::CatalogError;

/// The actions an audit record names, as stored and listed.
pub mod action {
    pub const INTEGRATION_CREATE: &str = "integration.create";
    pub const INTEGRATION_UPDATE: &str = "integration.update";
    pub const INTEGRATION_MONITORING: &str = "integration.monitoring";
    pub const INTEGRATION_DELETE: &str = "integration.delete";
    pub const INTEGRATION_TARGET_HOST: &str = "integration.target_host_changed";
    pub const MAINTENANCE_CREATE: &str = "maintenance.create";
    pub const MAINTENANCE_DELETE: &str = "maintenance.delete";
    pub const SUBSCRIPTION_CREATE: &str = "webhook_subscription.create";
    pub const SUBSCRIPTION_UPDATE: &str = "webhook_subscription.update";
    pub const SUBSCRIPTION_DELETE: &str = "webhook_subscription.delete";
    pub const DELIVERY_RETRY: &str = "webhook_subscription.delivery_retry";
    pub const API_KEY_CREATE: &str = "api_key.create";
    pub const API_KEY_DELETE: &str = "api_key.delete";

    /// Every action, in the order the API documents them.
    pub const ALL: [&str; 13] = [
        INTEGRATION_CREATE,
        INTEGRATION_UPDATE,
        INTEGRATION_MONITORING,
        INTEGRATION_DELETE,
        INTEGRATION_TARGET_HOST,
        MAINTENANCE_CREATE,
        MAINTENANCE_DELETE,
        SUBSCRIPTION_CREATE,
        SUBSCRIPTION_UPDATE,
        SUBSCRIPTION_DELETE,
        DELIVERY_RETRY,
        API_KEY_CREATE,
        API_KEY_DELETE,
    ];
}

/// One audit record.
pub type AuditEntry = entity::audit_log::Model;

/// Which audit records to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub integration_id: Option<Uuid>,
    /// Start below this record id (the previous page's cursor).
    pub before: Option<i64>,
    pub limit: u64,
}

pub(super) async fn record(
    txn: &DatabaseTransaction,
    store: &TenantStore,
    actor: &str,
    action: &str,
    integration_id: Option<Uuid>,
    details: Value,
) -> Result<(), CatalogError> {
    let row = ActiveModel {
        id: NotSet,
        tenant_id: Set(store.tenant.as_str().to_owned()),
        actor: Set(actor.to_owned()),
        action: Set(action.to_owned()),
        integration_id: Set(integration_id),
        timestamp: Set(Utc::now()),
        details: Set(details),
    };
    Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

impl TenantStore {
    /// A page of the tenant's audit trail, newest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn audit_list(
        &self,
        query: &AuditQuery,
    ) -> Result<Page<AuditEntry, i64>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let mut select = Entity::find().filter(Column::TenantId.eq(self.tenant.as_str()));
        if let Some(id) = query.integration_id {
            select = select.filter(Column::IntegrationId.eq(id));
        }
        if let Some(before) = query.before {
            select = select.filter(Column::Id.lt(before));
        }
        let rows = self
            .read_all(select.order_by_desc(Column::Id).limit(limit + 1))
            .await?;
        Ok(Page::from_rows(rows, limit, |e| e.id))
    }
}
