//! Webhook subscriptions and their deliveries.
//!
//! - A tenant manages its subscriptions through [`TenantStore`] (every change audited in the
//!   same transaction) and reads their deliveries.
//! - The webhook relay and delivery worker use [`WebhookStore`], which sees every tenant: the
//!   relay fans the outbox out into `alert_deliveries` rows ([`WebhookStore::fan_out`]), moving
//!   its cursor in the same transaction; the worker picks the oldest pending delivery of each
//!   (subscription, ordering key) ([`WebhookStore::heads`]) and records attempts in batches
//!   ([`WebhookStore::record`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{alert_delivery, alert_subscription, event};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::{load_cursor, save_cursor};
use super::{MAX_PAGE_SIZE, Page, Store, TenantStore, audit};
use crate::error::CatalogError;
use crate::events::TypeFilter;

const KIND: &str = "alert subscription";

/// A stored subscription.
pub type Subscription = alert_subscription::Model;
/// A stored delivery.
pub type Delivery = alert_delivery::Model;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt, or for a retry.
    Pending,
    /// The target answered 2xx.
    Delivered,
    /// Given up after the dead-letter time (or its subscription was deleted).
    Dead,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// The fields of a subscription, validated by the caller (URL, filters, secret reference).
#[derive(Clone, Debug)]
pub struct SubscriptionFields {
    pub name: String,
    pub target_url: String,
    /// Exact CloudEvents types or `prefix.*`; empty means every type.
    pub event_types: Vec<String>,
    /// Integrations whose events are delivered; empty means all of the tenant's.
    pub integration_ids: Vec<Uuid>,
    /// `authref://...` naming the signing secret.
    pub secret_ref: String,
    pub enabled: bool,
}

/// Which subscriptions to list (oldest first).
#[derive(Clone, Debug, Default)]
pub struct SubscriptionQuery {
    /// Start after this id (the previous page's cursor).
    pub after: Option<Uuid>,
    pub limit: u64,
}

/// Which deliveries of a subscription to list (newest first).
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    /// Start below this delivery id (the previous page's cursor).
    pub before: Option<i64>,
    pub limit: u64,
}

/// The event filter of a stored subscription.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionFilter {
    /// The concrete types delivered; `None` for every type.
    types: Option<HashSet<&'static str>>,
    /// The integrations delivered; empty for all.
    integrations: HashSet<Uuid>,
}

impl SubscriptionFilter {
    /// The filter of a stored subscription. An entry that no longer names a known event type
    /// (a type retired by an upgrade) matches nothing; it never widens the filter.
    pub fn of(s: &Subscription) -> Self {
        let entries: Vec<String> =
            serde_json::from_value(s.event_types.clone()).unwrap_or_default();
        let types = (!entries.is_empty()).then(|| {
            entries
                .into_iter()
                .filter_map(|e| TypeFilter::new([e]).ok())
                .flat_map(|f| f.types())
                .collect()
        });
        let integrations = serde_json::from_value::<Vec<Uuid>>(s.integration_ids.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        Self {
            types,
            integrations,
        }
    }

    /// Whether an event of this type and integration goes to the subscription.
    pub fn matches(&self, event_type: &str, integration_id: Option<Uuid>) -> bool {
        let typed = self.types.as_ref().is_none_or(|t| t.contains(event_type));
        let integration = self.integrations.is_empty()
            || integration_id.is_some_and(|id| self.integrations.contains(&id));
        typed && integration
    }
}

/// What the audit trail records of a subscription (the secret is a reference, never a value).
fn details(m: &Subscription) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "targetUrl": m.target_url,
        "eventTypes": m.event_types,
        "integrationIds": m.integration_ids,
        "secretRef": m.secret_ref,
        "enabled": m.enabled,
        "version": m.version,
    })
}

fn delivery_details(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "subscriptionId": d.subscription_id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
    })
}

// === impl TenantStore ===

impl TenantStore {
    fn live_subscriptions(&self) -> sea_orm::Select<alert_subscription::Entity> {
        alert_subscription::Entity::find()
            .filter(alert_subscription::Column::TenantId.eq(self.tenant.as_str()))
            .filter(alert_subscription::Column::DeletedAt.is_null())
    }

    async fn live_subscription(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
    ) -> Result<Subscription, CatalogError> {
        self.live_subscriptions()
            .filter(alert_subscription::Column::Id.eq(id))
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
        let row = alert_subscription::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant.as_str().to_owned()),
            name: Set(fields.name),
            target_url: Set(fields.target_url),
            event_types: Set(json!(fields.event_types)),
            integration_ids: Set(json!(fields.integration_ids)),
            secret_ref: Set(fields.secret_ref),
            enabled: Set(fields.enabled),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        };
        let created = row.insert(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            "alert_subscription.create",
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
            select = select.filter(alert_subscription::Column::Id.gt(after));
        }
        let rows = self
            .read_all(
                select
                    .order_by_asc(alert_subscription::Column::Id)
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
        let mut row: alert_subscription::ActiveModel = before.clone().into();
        row.name = Set(fields.name);
        row.target_url = Set(fields.target_url);
        row.event_types = Set(json!(fields.event_types));
        row.integration_ids = Set(json!(fields.integration_ids));
        row.secret_ref = Set(fields.secret_ref);
        row.enabled = Set(fields.enabled);
        row.version = Set(before.version + 1);
        row.updated_at = Set(Utc::now());
        let after = row.update(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            "alert_subscription.update",
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
        let mut row: alert_subscription::ActiveModel = before.clone().into();
        row.deleted_at = Set(Some(now));
        row.enabled = Set(false);
        row.version = Set(before.version + 1);
        row.updated_at = Set(now);
        row.update(&txn).await?;
        let dropped = alert_delivery::Entity::update_many()
            .col_expr(
                alert_delivery::Column::Status,
                Expr::value(DeliveryStatus::Dead.as_str()),
            )
            .col_expr(
                alert_delivery::Column::LastError,
                Expr::value("the subscription was deleted"),
            )
            .filter(alert_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(alert_delivery::Column::SubscriptionId.eq(id))
            .filter(alert_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        audit::record(
            &txn,
            self,
            actor,
            "alert_subscription.delete",
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
        let mut select = alert_delivery::Entity::find()
            .filter(alert_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(alert_delivery::Column::SubscriptionId.eq(subscription_id));
        if let Some(status) = query.status {
            select = select.filter(alert_delivery::Column::Status.eq(status.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(alert_delivery::Column::Id.lt(before));
        }
        let rows = select
            .order_by_desc(alert_delivery::Column::Id)
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
        let found = alert_delivery::Entity::find()
            .filter(alert_delivery::Column::TenantId.eq(self.tenant.as_str()))
            .filter(alert_delivery::Column::SubscriptionId.eq(subscription_id))
            .filter(alert_delivery::Column::Id.eq(delivery_id))
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
        let mut row: alert_delivery::ActiveModel = before.clone().into();
        row.status = Set(DeliveryStatus::Pending.as_str().to_owned());
        row.attempts = Set(0);
        row.next_attempt_at = Set(now);
        row.requeued_at = Set(Some(now));
        let after = row.update(&txn).await?;
        audit::record(
            &txn,
            self,
            actor,
            "alert_subscription.delivery_retry",
            None,
            json!({ "before": delivery_details(&before), "after": delivery_details(&after) }),
        )
        .await?;
        txn.commit().await?;
        Ok(Some(after))
    }
}

fn check_version(expected: Option<i64>, current: i64) -> Result<(), CatalogError> {
    match expected {
        Some(expected) if expected != current => {
            Err(CatalogError::VersionMismatch { expected, current })
        }
        _ => Ok(()),
    }
}

// === impl WebhookStore ===

impl Store {
    /// The webhook relay's and delivery worker's view: every tenant, for system tasks only
    /// (never reached from a request).
    pub fn webhooks(&self) -> WebhookStore {
        WebhookStore {
            db: self.db.clone(),
        }
    }
}

/// System-wide access for webhook delivery. On PostgreSQL its transactions set
/// `stella.all_tenants`; on SQLite they take the write lock at once (`BEGIN IMMEDIATE`), so a
/// relay that read the outbox is never refused its write by a newer snapshot.
#[derive(Clone, Debug)]
pub struct WebhookStore {
    db: DatabaseConnection,
}

/// What one fan-out pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Events read from the outbox.
    pub events: usize,
    /// Deliveries queued for them.
    pub deliveries: usize,
    /// The relay's cursor after the pass.
    pub cursor: i64,
}

/// The oldest pending delivery of one (subscription, ordering key), with what sending needs.
#[derive(Clone, Debug)]
pub struct Head {
    pub id: i64,
    pub tenant_id: String,
    pub subscription_id: Uuid,
    pub ordering_key: Uuid,
    pub event_seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// Where the dead-letter clock starts: when the delivery was queued, or requeued by hand.
    pub queued_at: DateTime<Utc>,
    pub target_url: String,
    pub secret_ref: String,
}

/// An event as sent: its time and its CloudEvent.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    pub time: DateTime<Utc>,
    pub payload: Value,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The target answered 2xx.
    Delivered {
        id: i64,
        status_code: u16,
        at: DateTime<Utc>,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        id: i64,
        status_code: Option<u16>,
        error: String,
        at: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
    },
    /// Failed past the dead-letter time: given up.
    Dead {
        id: i64,
        status_code: Option<u16>,
        error: String,
        at: DateTime<Utc>,
    },
}

/// Longest `last_error` stored.
const MAX_ERROR_CHARS: usize = 1000;

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// SQL written with `?` placeholders, numbered `$1, $2, …` for PostgreSQL.
fn statement(backend: DatabaseBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = if backend == DatabaseBackend::Postgres {
        let mut numbered = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                numbered.push_str(&format!("${n}"));
            } else {
                numbered.push(c);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The oldest pending delivery of each (subscription, ordering key) whose subscription is
/// live and enabled, at most `per_subscription` of each subscription (soonest due first), so
/// one subscription with many stuck integrations cannot fill every slot. Portable SQL: a
/// grouped `MIN(id)` over the queue index, and `ROW_NUMBER()` (SQLite 3.25+, PostgreSQL).
const HEADS_SQL: &str = "\
SELECT id, tenant_id, subscription_id, ordering_key, event_seq, event_id, event_type, attempts, \
       next_attempt_at, created_at, requeued_at, target_url, secret_ref \
FROM ( \
    SELECT d.id, d.tenant_id, d.subscription_id, d.ordering_key, d.event_seq, d.event_id, \
           d.event_type, d.attempts, d.next_attempt_at, d.created_at, d.requeued_at, \
           s.target_url, s.secret_ref, \
           ROW_NUMBER() OVER (PARTITION BY d.subscription_id \
                              ORDER BY d.next_attempt_at, d.id) AS subscription_rank \
    FROM ( \
        SELECT MIN(id) AS head_id FROM alert_deliveries WHERE status = 'pending' \
        GROUP BY subscription_id, ordering_key \
    ) heads \
    JOIN alert_deliveries d ON d.id = heads.head_id \
    JOIN alert_subscriptions s ON s.id = d.subscription_id \
    WHERE s.enabled AND s.deleted_at IS NULL \
) ranked \
WHERE subscription_rank <= ? \
ORDER BY next_attempt_at, id \
LIMIT ?";

/// Rows per multi-row INSERT of deliveries (15 columns, well under SQLite's 32766 variables).
const INSERT_CHUNK: usize = 1000;

impl WebhookStore {
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        super::begin_all_tenants(&self.db, true).await
    }

    /// Reads up to `limit` events after `consumer`'s cursor and queues one delivery per
    /// matching enabled subscription of each event's tenant, moving the cursor past them in
    /// the same transaction: a crash loses nothing and a pass never fans an event out twice
    /// (the unique `(subscription_id, event_seq)` index guards against a second relay too).
    ///
    /// # Errors
    /// [`DbErr`]; nothing is queued and the cursor does not move then.
    pub async fn fan_out(&self, consumer: &str, limit: u64) -> Result<FanOut, DbErr> {
        let txn = self.begin().await?;
        let cursor = load_cursor(&txn, consumer).await?;
        let events = event::Entity::find()
            .filter(event::Column::Seq.gt(cursor))
            .order_by_asc(event::Column::Seq)
            .limit(limit.max(1))
            .all(&txn)
            .await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            txn.commit().await?;
            return Ok(FanOut {
                cursor,
                ..FanOut::default()
            });
        };
        let tenants: HashSet<&str> = events.iter().map(|e| e.tenant_id.as_str()).collect();
        let subscriptions = alert_subscription::Entity::find()
            .filter(alert_subscription::Column::TenantId.is_in(tenants.iter().copied()))
            .filter(alert_subscription::Column::DeletedAt.is_null())
            .filter(alert_subscription::Column::Enabled.eq(true))
            .order_by_asc(alert_subscription::Column::Id)
            .all(&txn)
            .await?;
        let mut by_tenant: HashMap<&str, Vec<(Uuid, SubscriptionFilter)>> = HashMap::new();
        for s in &subscriptions {
            by_tenant
                .entry(s.tenant_id.as_str())
                .or_default()
                .push((s.id, SubscriptionFilter::of(s)));
        }
        let now = Utc::now();
        let mut rows = Vec::new();
        for e in &events {
            let Some(subs) = by_tenant.get(e.tenant_id.as_str()) else {
                continue;
            };
            for (subscription_id, filter) in subs {
                if filter.matches(&e.event_type, e.integration_id) {
                    rows.push(alert_delivery::ActiveModel {
                        id: NotSet,
                        tenant_id: Set(e.tenant_id.clone()),
                        subscription_id: Set(*subscription_id),
                        event_seq: Set(e.seq),
                        event_id: Set(e.id),
                        event_type: Set(e.event_type.clone()),
                        ordering_key: Set(e.integration_id.unwrap_or(Uuid::nil())),
                        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
                        attempts: Set(0),
                        next_attempt_at: Set(now),
                        last_attempt_at: Set(None),
                        last_status_code: Set(None),
                        last_error: Set(None),
                        created_at: Set(now),
                        requeued_at: Set(None),
                        delivered_at: Set(None),
                    });
                }
            }
        }
        let deliveries = rows.len();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
            alert_delivery::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([
                    alert_delivery::Column::SubscriptionId,
                    alert_delivery::Column::EventSeq,
                ])
                .exec_without_returning(&txn)
                .await?;
        }
        save_cursor(&txn, consumer, last).await?;
        txn.commit().await?;
        Ok(FanOut {
            events: events.len(),
            deliveries,
            cursor: last,
        })
    }

    /// Up to `limit` heads of the queue (see [`HEADS_SQL`]), soonest due first, at most
    /// `per_subscription` of each subscription. Heads not yet due are included, so the
    /// caller knows when to look again.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn heads(&self, per_subscription: u64, limit: u64) -> Result<Vec<Head>, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = self.begin_read().await?;
        let rows = txn
            .query_all_raw(statement(
                backend,
                HEADS_SQL,
                vec![
                    (per_subscription.max(1) as i64).into(),
                    (limit.max(1) as i64).into(),
                ],
            ))
            .await?;
        txn.commit().await?;
        rows.iter()
            .map(|r| {
                let created_at: DateTime<Utc> = r.try_get("", "created_at")?;
                let requeued_at: Option<DateTime<Utc>> = r.try_get("", "requeued_at")?;
                Ok(Head {
                    id: r.try_get("", "id")?,
                    tenant_id: r.try_get("", "tenant_id")?,
                    subscription_id: r.try_get("", "subscription_id")?,
                    ordering_key: r.try_get("", "ordering_key")?,
                    event_seq: r.try_get("", "event_seq")?,
                    event_id: r.try_get("", "event_id")?,
                    event_type: r.try_get("", "event_type")?,
                    attempts: r.try_get("", "attempts")?,
                    next_attempt_at: r.try_get("", "next_attempt_at")?,
                    queued_at: requeued_at.unwrap_or(created_at),
                    target_url: r.try_get("", "target_url")?,
                    secret_ref: r.try_get("", "secret_ref")?,
                })
            })
            .collect()
    }

    /// The outbox events with these sequence numbers (a pruned one is absent).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn outbox_events(&self, seqs: &[i64]) -> Result<HashMap<i64, OutboxEvent>, DbErr> {
        if seqs.is_empty() {
            return Ok(HashMap::new());
        }
        let txn = self.begin_read().await?;
        let rows = event::Entity::find()
            .filter(event::Column::Seq.is_in(seqs.iter().copied()))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|e| {
                (
                    e.seq,
                    OutboxEvent {
                        time: e.time,
                        payload: e.payload,
                    },
                )
            })
            .collect())
    }

    /// A read-only transaction (no write lock on SQLite).
    async fn begin_read(&self) -> Result<DatabaseTransaction, DbErr> {
        super::begin_all_tenants(&self.db, false).await
    }

    /// Records a batch of attempts in one transaction: one UPDATE per status code for the
    /// delivered ones, one per failure. A failure never touches a delivery that is no longer
    /// pending (its subscription was deleted meanwhile).
    ///
    /// # Errors
    /// [`DbErr`]; nothing is recorded then.
    pub async fn record(&self, outcomes: &[Outcome]) -> Result<(), DbErr> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut delivered: HashMap<u16, (Vec<i64>, DateTime<Utc>)> = HashMap::new();
        for o in outcomes {
            if let Outcome::Delivered {
                id,
                status_code,
                at,
            } = o
            {
                let entry = delivered.entry(*status_code).or_insert((Vec::new(), *at));
                entry.0.push(*id);
                entry.1 = entry.1.max(*at);
            }
        }
        let txn = self.begin().await?;
        for (code, (ids, at)) in delivered {
            alert_delivery::Entity::update_many()
                .col_expr(
                    alert_delivery::Column::Status,
                    Expr::value(DeliveryStatus::Delivered.as_str()),
                )
                .col_expr(
                    alert_delivery::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(
                        Expr::col(alert_delivery::Column::Attempts),
                        1,
                    ),
                )
                .col_expr(alert_delivery::Column::LastAttemptAt, Expr::value(at))
                .col_expr(
                    alert_delivery::Column::LastStatusCode,
                    Expr::value(i32::from(code)),
                )
                .col_expr(
                    alert_delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(alert_delivery::Column::DeliveredAt, Expr::value(at))
                .filter(alert_delivery::Column::Id.is_in(ids))
                .exec(&txn)
                .await?;
        }
        for o in outcomes {
            let (id, status, code, error, at, next) = match o {
                Outcome::Delivered { .. } => continue,
                Outcome::Retry {
                    id,
                    status_code,
                    error,
                    at,
                    next_attempt_at,
                } => (
                    *id,
                    DeliveryStatus::Pending,
                    status_code,
                    error,
                    at,
                    *next_attempt_at,
                ),
                Outcome::Dead {
                    id,
                    status_code,
                    error,
                    at,
                } => (*id, DeliveryStatus::Dead, status_code, error, at, *at),
            };
            alert_delivery::Entity::update_many()
                .col_expr(alert_delivery::Column::Status, Expr::value(status.as_str()))
                .col_expr(
                    alert_delivery::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(
                        Expr::col(alert_delivery::Column::Attempts),
                        1,
                    ),
                )
                .col_expr(alert_delivery::Column::LastAttemptAt, Expr::value(*at))
                .col_expr(
                    alert_delivery::Column::LastStatusCode,
                    Expr::value(code.map(i32::from)),
                )
                .col_expr(alert_delivery::Column::LastError, Expr::value(clip(error)))
                .col_expr(alert_delivery::Column::NextAttemptAt, Expr::value(next))
                .filter(alert_delivery::Column::Id.eq(id))
                .filter(alert_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration as ChronoDuration;

    use super::*;
    use crate::events::{EventKind, NewEvent};
    use crate::store::testing;
    use crate::tenant::TenantId;
    use crate::{AuditQuery, TenantStore};

    fn fields(
        name: &str,
        types: &[&str],
        integrations: &[Uuid],
        enabled: bool,
    ) -> SubscriptionFields {
        SubscriptionFields {
            name: name.into(),
            target_url: "https://hooks.example.com/in".into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            integration_ids: integrations.to_vec(),
            secret_ref: "authref://env/HOOK_SECRET".into(),
            enabled,
        }
    }

    fn tenant(store: &Store, name: &str) -> TenantStore {
        store.tenant(TenantId::new(name).unwrap())
    }

    fn event(kind: EventKind, tenant: &str, integration: Option<Uuid>) -> NewEvent {
        NewEvent::new(
            kind,
            Arc::from(tenant),
            integration,
            Utc::now(),
            json!({"status": "x"}),
        )
    }

    async fn deliveries(store: &Store) -> Vec<Delivery> {
        let txn = store.webhooks().begin_read().await.unwrap();
        let rows = alert_delivery::Entity::find()
            .order_by_asc(alert_delivery::Column::Id)
            .all(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        rows
    }

    #[tokio::test]
    async fn subscriptions_are_audited_versioned_and_per_tenant() {
        let store = testing::store().await;
        let a = tenant(&store, "ta");
        let b = tenant(&store, "tb");
        let first = a
            .subscription_create("alice", fields("one", &[], &[], true))
            .await
            .unwrap();
        let second = a
            .subscription_create("alice", fields("two", &[], &[], true))
            .await
            .unwrap();
        assert_eq!(first.version, 1);
        let page = a
            .subscription_list(&SubscriptionQuery {
                after: None,
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!(page.items[0].id, first.id);
        let next = a
            .subscription_list(&SubscriptionQuery {
                after: page.next,
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!(next.items[0].id, second.id);
        assert!(next.next.is_none());

        let stale = a
            .subscription_update("alice", first.id, fields("uno", &[], &[], false), Some(7))
            .await;
        assert!(matches!(
            stale,
            Err(CatalogError::VersionMismatch {
                expected: 7,
                current: 1
            })
        ));
        let updated = a
            .subscription_update("alice", first.id, fields("uno", &[], &[], false), Some(1))
            .await
            .unwrap();
        assert_eq!((updated.name.as_str(), updated.version), ("uno", 2));
        assert!(!updated.enabled);

        // Another tenant finds nothing, by id or in a list.
        assert!(matches!(
            b.subscription_get(first.id).await,
            Err(CatalogError::NotFound { .. })
        ));
        assert!(matches!(
            b.subscription_delete("bob", first.id, None).await,
            Err(CatalogError::NotFound { .. })
        ));
        let theirs = b
            .subscription_list(&SubscriptionQuery {
                after: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(theirs.items.is_empty());

        a.subscription_delete("alice", first.id, None)
            .await
            .unwrap();
        assert!(matches!(
            a.subscription_get(first.id).await,
            Err(CatalogError::NotFound { .. })
        ));
        let audit = a
            .audit_list(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "alert_subscription.delete",
                "alert_subscription.update",
                "alert_subscription.create",
                "alert_subscription.create",
            ]
        );
        assert_eq!(audit.items[1].details["before"]["name"], "one");
        assert_eq!(audit.items[1].details["after"]["name"], "uno");
    }

    #[tokio::test]
    async fn fan_out_queues_matching_deliveries_once_and_moves_the_cursor_with_them() {
        let store = testing::store().await;
        let (a, b) = (tenant(&store, "ta"), tenant(&store, "tb"));
        let (x, y, z) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let all = a
            .subscription_create("u", fields("all", &[], &[], true))
            .await
            .unwrap();
        let recovered = a
            .subscription_create(
                "u",
                fields(
                    "recovered",
                    &["dev.stellaops.integration.health.recovered"],
                    &[],
                    true,
                ),
            )
            .await
            .unwrap();
        let only_x = a
            .subscription_create(
                "u",
                fields("x", &["dev.stellaops.integration.health.*"], &[x], true),
            )
            .await
            .unwrap();
        a.subscription_create("u", fields("off", &[], &[], false))
            .await
            .unwrap();
        let theirs = b
            .subscription_create("u", fields("b", &[], &[], true))
            .await
            .unwrap();
        let events = [
            event(EventKind::HealthChanged, "ta", Some(x)),
            event(EventKind::HealthRecovered, "ta", Some(y)),
            event(EventKind::HealthChanged, "tb", Some(z)),
            event(EventKind::HealthRecovered, "ta", Some(x)),
            event(EventKind::CredentialExpiring, "ta", None),
        ];
        let stored = store
            .system()
            .write_results(&[], &[], &events)
            .await
            .unwrap();
        let webhooks = store.webhooks();

        let first = webhooks.fan_out("webhooks", 2).await.unwrap();
        assert_eq!(
            first,
            FanOut {
                events: 2,
                deliveries: 4,
                cursor: stored[1].seq
            }
        );
        assert_eq!(
            store.system().cursor("webhooks").await.unwrap(),
            stored[1].seq,
            "the cursor moved with the deliveries"
        );
        let rest = webhooks.fan_out("webhooks", 100).await.unwrap();
        assert_eq!((rest.events, rest.deliveries), (3, 5));
        let idle = webhooks.fan_out("webhooks", 100).await.unwrap();
        assert_eq!(
            (idle.events, idle.deliveries, idle.cursor),
            (0, 0, rest.cursor)
        );

        let rows = deliveries(&store).await;
        let got: Vec<(i64, Uuid)> = rows
            .iter()
            .map(|d| (d.event_seq, d.subscription_id))
            .collect();
        let s = |i: usize| stored[i].seq;
        assert_eq!(
            got,
            [
                (s(0), all.id),
                (s(0), only_x.id),
                (s(1), all.id),
                (s(1), recovered.id),
                (s(2), theirs.id),
                (s(3), all.id),
                (s(3), recovered.id),
                (s(3), only_x.id),
                (s(4), all.id),
            ]
        );
        assert!(
            rows.iter()
                .all(|d| d.status == "pending" && d.attempts == 0)
        );
        assert_eq!(rows[4].tenant_id, "tb");
        assert_eq!(rows[8].ordering_key, Uuid::nil(), "no integration");
        assert_eq!(rows[0].ordering_key, x);
        assert_eq!(rows[0].event_id, stored[0].id);

        // A relay that lost its cursor (or a second relay) fans nothing out twice.
        let txn = webhooks.begin().await.unwrap();
        save_cursor(&txn, "webhooks", 0).await.unwrap();
        txn.commit().await.unwrap();
        let again = webhooks.fan_out("webhooks", 100).await.unwrap();
        assert_eq!(again.events, 5);
        assert_eq!(deliveries(&store).await.len(), 9);
    }

    async fn queue(
        store: &Store,
        subscription: Uuid,
        seq: i64,
        key: Uuid,
        status: DeliveryStatus,
        next_attempt_at: DateTime<Utc>,
    ) -> i64 {
        let txn = store.webhooks().begin().await.unwrap();
        let row = alert_delivery::ActiveModel {
            id: NotSet,
            tenant_id: Set("ta".into()),
            subscription_id: Set(subscription),
            event_seq: Set(seq),
            event_id: Set(Uuid::now_v7()),
            event_type: Set("dev.stellaops.integration.health.changed".into()),
            ordering_key: Set(key),
            status: Set(status.as_str().into()),
            attempts: Set(0),
            next_attempt_at: Set(next_attempt_at),
            last_attempt_at: Set(None),
            last_status_code: Set(None),
            last_error: Set(None),
            created_at: Set(Utc::now()),
            requeued_at: Set(None),
            delivered_at: Set(None),
        }
        .insert(&txn)
        .await
        .unwrap();
        txn.commit().await.unwrap();
        row.id
    }

    #[tokio::test]
    async fn heads_are_the_oldest_pending_delivery_of_each_key_of_live_subscriptions() {
        use DeliveryStatus::{Dead, Delivered, Pending};
        let store = testing::store().await;
        let a = tenant(&store, "ta");
        let s1 = a
            .subscription_create("u", fields("1", &[], &[], true))
            .await
            .unwrap()
            .id;
        let s2 = a
            .subscription_create("u", fields("2", &[], &[], true))
            .await
            .unwrap()
            .id;
        let off = a
            .subscription_create("u", fields("3", &[], &[], false))
            .await
            .unwrap()
            .id;
        let gone = a
            .subscription_create("u", fields("4", &[], &[], true))
            .await
            .unwrap()
            .id;
        let (k1, k2) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let past = now - ChronoDuration::seconds(5);
        let later = now + ChronoDuration::hours(1);
        queue(&store, s1, 1, k1, Delivered, past).await;
        let s1_k1 = queue(&store, s1, 2, k1, Pending, past).await;
        queue(&store, s1, 3, k1, Pending, past).await;
        let s1_k2 = queue(&store, s1, 4, k2, Pending, later).await;
        queue(&store, s2, 5, k1, Dead, past).await;
        let s2_k1 = queue(&store, s2, 6, k1, Pending, now).await;
        queue(&store, off, 7, k1, Pending, past).await;
        let dropped = queue(&store, gone, 8, k1, Pending, past).await;
        a.subscription_delete("u", gone, None).await.unwrap();

        let webhooks = store.webhooks();
        let ids = |heads: Vec<Head>| heads.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            ids(webhooks.heads(8, 10).await.unwrap()),
            [s1_k1, s2_k1, s1_k2]
        );
        // At most one per subscription: a subscription's other keys wait for a slot.
        assert_eq!(ids(webhooks.heads(1, 10).await.unwrap()), [s1_k1, s2_k1]);
        assert_eq!(ids(webhooks.heads(8, 1).await.unwrap()), [s1_k1]);
        let head = &webhooks.heads(8, 1).await.unwrap()[0];
        assert_eq!(head.target_url, "https://hooks.example.com/in");
        assert_eq!((head.event_seq, head.ordering_key), (2, k1));

        // Results: the delivered head makes way for the next of its key; a failure stays head.
        let at = Utc::now();
        webhooks
            .record(&[
                Outcome::Delivered {
                    id: s1_k1,
                    status_code: 204,
                    at,
                },
                Outcome::Retry {
                    id: s2_k1,
                    status_code: Some(503),
                    error: "the target answered HTTP 503".into(),
                    at,
                    next_attempt_at: later,
                },
                Outcome::Retry {
                    id: dropped,
                    status_code: None,
                    error: "late".into(),
                    at,
                    next_attempt_at: at,
                },
            ])
            .await
            .unwrap();
        let heads = webhooks.heads(8, 10).await.unwrap();
        assert_eq!(heads.len(), 3);
        assert_eq!(heads[0].event_seq, 3, "the next of s1/k1");
        let rows = deliveries(&store).await;
        let row = |id: i64| rows.iter().find(|d| d.id == id).unwrap().clone();
        let delivered = row(s1_k1);
        assert_eq!(delivered.status, "delivered");
        assert_eq!(
            (delivered.attempts, delivered.last_status_code),
            (1, Some(204))
        );
        assert!(delivered.delivered_at.is_some());
        let retried = row(s2_k1);
        assert_eq!(retried.status, "pending");
        assert_eq!(retried.attempts, 1);
        assert_eq!(
            retried.last_error.as_deref(),
            Some("the target answered HTTP 503")
        );
        let dead = row(dropped);
        assert_eq!(
            (dead.status.as_str(), dead.attempts),
            ("dead", 0),
            "a deleted subscription's delivery is not brought back"
        );
        assert_eq!(
            dead.last_error.as_deref(),
            Some("the subscription was deleted")
        );

        // A dead delivery can be requeued by hand, once, by its tenant.
        let b = tenant(&store, "tb");
        assert!(matches!(
            b.delivery_retry("v", s2, 5).await,
            Err(CatalogError::NotFound { .. })
        ));
        let dead_id = rows.iter().find(|d| d.event_seq == 5).unwrap().id;
        let requeued = a.delivery_retry("u", s2, dead_id).await.unwrap().unwrap();
        assert_eq!(
            (requeued.status.as_str(), requeued.attempts),
            ("pending", 0)
        );
        assert!(requeued.requeued_at.is_some());
        assert!(matches!(
            a.delivery_retry("u", s2, dead_id).await,
            Err(CatalogError::Conflict { .. })
        ));
        assert!(a.delivery_retry("u", s2, 999_999).await.unwrap().is_none());
        let page = a
            .delivery_list(
                s2,
                &DeliveryQuery {
                    status: Some(Pending),
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let listed: Vec<i64> = page.items.iter().map(|d| d.id).collect();
        assert_eq!(listed, [s2_k1, dead_id], "newest first");
        // The requeued delivery is older, so it is its key's head again.
        let heads = webhooks.heads(8, 10).await.unwrap();
        assert!(heads.iter().any(|h| h.id == dead_id));
        assert!(!heads.iter().any(|h| h.id == s2_k1));
    }
}
