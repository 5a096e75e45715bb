//! Maintenance windows of a tenant's integrations: created and deleted with an audit row in
//! the same transaction, and read by the health engine at start-up.

use chrono::{DateTime, Utc};
use entity::maintenance_window::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde_json::json;
use uuid::Uuid;

use super::{SystemStore, TenantStore, audit};
use crate::error::CatalogError;
use crate::events::maintenance::{Recurrence, Window};

const KIND: &str = "maintenance window";

/// A window to create.
#[derive(Clone, Debug)]
pub struct NewMaintenanceWindow {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub recurrence: Option<Recurrence>,
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// The alert policy's view of a stored window.
pub fn window_of(m: &Model) -> Window {
    Window {
        id: m.id,
        integration_id: m.integration_id,
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        recurrence: m.recurrence.as_deref().and_then(Recurrence::parse),
        until: m.until,
    }
}

fn details(m: &Model) -> serde_json::Value {
    json!({
        "id": m.id,
        "startsAt": m.starts_at,
        "endsAt": m.ends_at,
        "recurrence": m.recurrence,
        "until": m.until,
        "reason": m.reason,
    })
}

impl TenantStore {
    /// Adds a maintenance window to a live integration of the tenant, and records it in the
    /// audit trail, in one transaction. The caller has validated the window's shape.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the integration is not the tenant's live one.
    pub async fn maintenance_create(
        &self,
        actor: &str,
        integration_id: Uuid,
        new: NewMaintenanceWindow,
    ) -> Result<Model, CatalogError> {
        let txn = self.begin(true).await?;
        self.require_integration(&txn, integration_id).await?;
        let row = ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant.as_str().to_owned()),
            integration_id: Set(integration_id),
            starts_at: Set(new.starts_at),
            ends_at: Set(new.ends_at),
            recurrence: Set(new.recurrence.map(|r| r.as_str().to_owned())),
            until: Set(new.until),
            reason: Set(new.reason),
            created_by: Set(actor.to_owned()),
            created_at: Set(Utc::now()),
        };
        let created = row.insert(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            super::audit::action::MAINTENANCE_CREATE,
            Some(integration_id),
            json!({ "after": details(&created) }),
        )
        .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// The maintenance windows of a live integration of the tenant, by start.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the integration is not the tenant's live one.
    pub async fn maintenance_list(&self, integration_id: Uuid) -> Result<Vec<Model>, CatalogError> {
        let txn = self.begin(false).await?;
        self.require_integration(&txn, integration_id).await?;
        let rows = Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::IntegrationId.eq(integration_id))
            .order_by_asc(Column::StartsAt)
            .order_by_asc(Column::Id)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows)
    }

    /// One maintenance window of a live integration of the tenant.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the integration or the window is not the tenant's.
    pub async fn maintenance_get(
        &self,
        integration_id: Uuid,
        window_id: Uuid,
    ) -> Result<Model, CatalogError> {
        let txn = self.begin(false).await?;
        self.require_integration(&txn, integration_id).await?;
        let found = Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::IntegrationId.eq(integration_id))
            .filter(Column::Id.eq(window_id))
            .one(&txn)
            .await?;
        txn.commit().await?;
        found.ok_or(CatalogError::NotFound {
            kind: KIND,
            id: window_id,
        })
    }

    /// Deletes a maintenance window, and records it in the audit trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the integration or the window is not the tenant's.
    pub async fn maintenance_delete(
        &self,
        actor: &str,
        integration_id: Uuid,
        window_id: Uuid,
    ) -> Result<Model, CatalogError> {
        let txn = self.begin(true).await?;
        self.require_integration(&txn, integration_id).await?;
        let found = Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::IntegrationId.eq(integration_id))
            .filter(Column::Id.eq(window_id))
            .one(&txn)
            .await?
            .ok_or(CatalogError::NotFound {
                kind: KIND,
                id: window_id,
            })?;
        Entity::delete_by_id(window_id).exec(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            super::audit::action::MAINTENANCE_DELETE,
            Some(integration_id),
            json!({ "before": details(&found) }),
        )
        .await?;
        txn.commit().await?;
        Ok(found)
    }

    async fn require_integration(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        id: Uuid,
    ) -> Result<(), CatalogError> {
        let live = self
            .live()
            .filter(entity::integration::Column::Id.eq(id))
            .one(txn)
            .await?;
        match live {
            Some(_) => Ok(()),
            None => Err(CatalogError::NotFound {
                kind: "integration",
                id,
            }),
        }
    }
}

impl SystemStore {
    /// One maintenance window of any tenant.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn maintenance_window(&self, id: Uuid) -> Result<Option<Window>, DbErr> {
        let txn = self.begin().await?;
        let row = Entity::find_by_id(id).one(&txn).await?;
        txn.commit().await?;
        Ok(row.as_ref().map(window_of))
    }

    /// Every maintenance window that can still be active at or after `now`.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn maintenance_windows(&self, now: DateTime<Utc>) -> Result<Vec<Window>, DbErr> {
        let txn = self.begin().await?;
        let rows = Entity::find()
            .filter(
                Condition::any()
                    .add(Column::EndsAt.gt(now))
                    .add(Column::Recurrence.is_not_null()),
            )
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .iter()
            .map(window_of)
            .filter(|w| !w.is_over(now))
            .collect())
    }
}
