//! A tenant's subscriptions and their deliveries, every change audited in the same transaction.

use std::collections::HashSet;

use chrono::Utc;
use entity::{webhook_delivery, webhook_subscription};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::error::CatalogError;
use crate::store::{MAX_PAGE_SIZE, Page, TenantStore, audit};

// === impl TenantStore ===

impl TenantStore {
    fn live_subscriptions(&self) -> sea_orm::Select<webhook_subscription::Entity> {
        webhook_subscription::Entity::find()
            .filter(webhook_subscription::Column::TenantId.eq(self.tenant.as_str()))
            .filter(webhook_subscription::Column::DeletedAt.is_null())
    }

    async fn live_subscription(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
    ) -> Result<Subscription, CatalogError> {
        self.live_subscriptions()
            .filter(webhook_subscription::Column::Id.eq(id))
            .one(txn)
            .await?
            .ok_or(CatalogError::NotFound { kind: KIND, id })
    }

    /// Creates a subscription, and records it in the audit trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn subscription_create(
        &self,
        actor: &str,
        fields: SubscriptionFields,
    ) -> Result<Subscription, CatalogError> {
        let now = Utc::now();
        let txn = self.begin(true).await?;
        let row = webhook_subscription::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant.as_str().to_owned()),
            name: Set(fields.name),
            target_url: Set(fields.target_url),
            event_types: Set(json!(fields.event_types)),
            integration_ids: Set(json!(fields.integration_ids)),
            secret_auth_ref_uri: Set(fields.secret_auth_ref_uri),
            enabled: Set(fields.enabled),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            incident_members: Set(fields.incident_members.as_str().to_owned()),
            batch_max_events: Set(fields.batch.map(|b| clamp_i32(b.max_events))),
            batch_max_delay_ms: Set(fields.batch.map(|b| clamp_i32(b.max_delay_ms))),
            target_certificate_expires_at: Set(None),
            target_certificate_warned_for: Set(None),
        };
        let created = row.insert(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            crate::store::audit::action::SUBSCRIPTION_CREATE,
            None,
            json!({ "after": details(&created) }),
        )
        .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// One live subscription of the tenant.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when it does not exist, is deleted, or is another tenant's.
    pub async fn subscription_get(&self, id: Uuid) -> Result<Subscription, CatalogError> {
        let txn = self.begin(false).await?;
        let found = self.live_subscription(&txn, id).await;
        txn.commit().await?;
        found
    }

    /// A page of the tenant's live subscriptions, oldest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn subscription_list(
        &self,
        query: &SubscriptionQuery,
    ) -> Result<Page<Subscription, Uuid>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let mut select = self.live_subscriptions();
        if let Some(after) = query.after {
            select = select.filter(webhook_subscription::Column::Id.gt(after));
        }
        let rows = self
            .read_all(
                select
                    .order_by_asc(webhook_subscription::Column::Id)
                    .limit(limit + 1),
            )
            .await?;
        Ok(Page::from_rows(rows, limit, |s| s.id))
    }

    /// Replaces a subscription's fields, and records it in the audit trail, in one
    /// transaction. With `expected_version`, only that version is replaced.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::VersionMismatch`].
    pub async fn subscription_update(
        &self,
        actor: &str,
        id: Uuid,
        fields: SubscriptionFields,
        expected_version: Option<i64>,
    ) -> Result<Subscription, CatalogError> {
        let txn = self.begin(true).await?;
        let before = self.live_subscription(&txn, id).await?;
        check_version(expected_version, before.version)?;
        let mut row: webhook_subscription::ActiveModel = before.clone().into();
        if fields.target_url != before.target_url {
            // What the old target presented says nothing of the new one.
            row.target_certificate_expires_at = Set(None);
            row.target_certificate_warned_for = Set(None);
        }
        row.name = Set(fields.name);
        row.target_url = Set(fields.target_url);
        row.event_types = Set(json!(fields.event_types));
        row.integration_ids = Set(json!(fields.integration_ids));
        row.secret_auth_ref_uri = Set(fields.secret_auth_ref_uri);
        row.enabled = Set(fields.enabled);
        row.incident_members = Set(fields.incident_members.as_str().to_owned());
        row.batch_max_events = Set(fields.batch.map(|b| clamp_i32(b.max_events)));
        row.batch_max_delay_ms = Set(fields.batch.map(|b| clamp_i32(b.max_delay_ms)));
        row.version = Set(before.version + 1);
        row.updated_at = Set(Utc::now());
        let after = row.update(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            crate::store::audit::action::SUBSCRIPTION_UPDATE,
            None,
            json!({ "before": details(&before), "after": details(&after) }),
        )
        .await?;
        txn.commit().await?;
        Ok(after)
    }

    /// Deletes a subscription (softly: the audit trail and its deliveries stay readable by
    /// id in the audit), dead-letters its pending deliveries, and records it in the audit
    /// trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::VersionMismatch`].
    pub async fn subscription_delete(
        &self,
        actor: &str,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<(), CatalogError> {
        let txn = self.begin(true).await?;
        let before = self.live_subscription(&txn, id).await?;
        check_version(expected_version, before.version)?;
        let now = Utc::now();
        let mut row: webhook_subscription::ActiveModel = before.clone().into();
        row.deleted_at = Set(Some(now));
        row.enabled = Set(false);
        row.version = Set(before.version + 1);
        row.updated_at = Set(now);
        row.update(&txn).await?;
        let dropped = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::Status,
                Expr::value(DeliveryStatus::Dead.as_str()),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value("the subscription was deleted"),
            )
            .filter(webhook_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(webhook_delivery::Column::SubscriptionId.eq(id))
            .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        audit::record(
            &txn,
            self,
            actor,
            crate::store::audit::action::SUBSCRIPTION_DELETE,
            None,
            json!({ "before": details(&before), "pendingDeliveriesDropped": dropped }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Of `ids`, those that are not live integrations of the tenant.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn missing_integrations(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, CatalogError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.begin(false).await?;
        let found: HashSet<Uuid> = self
            .live()
            .select_only()
            .column(entity::integration::Column::Id)
            .filter(entity::integration::Column::Id.is_in(ids.iter().copied()))
            .into_tuple::<Uuid>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        txn.commit().await?;
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !found.contains(id))
            .collect())
    }

    /// A page of a live subscription's deliveries, newest first.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the subscription is not the tenant's live one.
    pub async fn delivery_list(
        &self,
        subscription_id: Uuid,
        query: &DeliveryQuery,
    ) -> Result<Page<Delivery, i64>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let txn = self.begin(false).await?;
        self.live_subscription(&txn, subscription_id).await?;
        let mut select = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(webhook_delivery::Column::SubscriptionId.eq(subscription_id));
        if let Some(status) = query.status {
            select = select.filter(webhook_delivery::Column::Status.eq(status.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(webhook_delivery::Column::Id.lt(before));
        }
        let rows = select
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(limit + 1)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(Page::from_rows(rows, limit, |d| d.id))
    }

    /// Puts a dead delivery back in the queue, and records it in the audit trail, in one
    /// transaction. Its attempts start again from zero and its dead-letter clock from now; it
    /// goes out before the later pending deliveries of its integration.
    ///
    /// `None` when the subscription has no such delivery.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for a subscription that is not the tenant's live one;
    /// [`CatalogError::Conflict`] when the delivery is not dead.
    pub async fn delivery_retry(
        &self,
        actor: &str,
        subscription_id: Uuid,
        delivery_id: i64,
    ) -> Result<Option<Delivery>, CatalogError> {
        let txn = self.begin(true).await?;
        self.live_subscription(&txn, subscription_id).await?;
        let found = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(webhook_delivery::Column::SubscriptionId.eq(subscription_id))
            .filter(webhook_delivery::Column::Id.eq(delivery_id))
            .one(&txn)
            .await?;
        let Some(before) = found else {
            return Ok(None);
        };
        if before.status != DeliveryStatus::Dead.as_str() {
            return Err(CatalogError::Conflict {
                field: "status",
                message: format!(
                    "only a dead delivery can be retried; this one is {}",
                    before.status
                ),
            });
        }
        let now = Utc::now();
        let mut row: webhook_delivery::ActiveModel = before.clone().into();
        row.status = Set(DeliveryStatus::Pending.as_str().to_owned());
        row.attempts = Set(0);
        row.next_attempt_at = Set(now);
        row.requeued_at = Set(Some(now));
        let after = row.update(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            crate::store::audit::action::DELIVERY_RETRY,
            None,
            json!({ "before": delivery_details(&before), "after": delivery_details(&after) }),
        )
        .await?;
        txn.commit().await?;
        Ok(Some(after))
    }
}

fn clamp_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn check_version(expected: Option<i64>, current: i64) -> Result<(), CatalogError> {
    match expected {
        Some(expected) if expected != current => {
            Err(CatalogError::VersionMismatch { expected, current })
        }
        _ => Ok(()),
    }
}
