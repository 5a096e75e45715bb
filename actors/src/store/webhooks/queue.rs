//! The delivery queue, across tenants: fan-out from the outbox, heads, recorded attempts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{event, webhook_delivery, webhook_subscription};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::store::Store;
use crate::store::events::{load_cursor, save_cursor};

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

/// A pending delivery, as the worker holds it in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub subscription_id: Uuid,
    pub ordering_key: Uuid,
    pub event_seq: i64,
    pub event_id: Uuid,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// Where the dead-letter clock starts: when the delivery was queued, or requeued by hand.
    pub queued_at: DateTime<Utc>,
}

/// A subscription as the worker needs it: where and how to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub id: Uuid,
    pub tenant_id: String,
    /// Live and enabled: its deliveries go out. Otherwise they wait (disabled) or are dead
    /// (deleted).
    pub active: bool,
    pub target_url: String,
    pub secret_auth_ref_uri: String,
    pub batch: Option<Batching>,
}

/// The oldest pending deliveries of each key of one subscription, and how many it has.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionQueue {
    /// The oldest pending delivery of each (subscription, ordering key), in id order.
    pub heads: Vec<Pending>,
    /// Pending deliveries of the subscription (up to the bound asked for).
    pub pending: u64,
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

/// Pending deliveries after an id, in id order: the worker's scan of what the relay queued.
/// The primary key serves it; new rows are almost all pending.
const SCAN_SQL: &str = "SELECT id, subscription_id, ordering_key, event_seq, event_id, attempts, \
     next_attempt_at, created_at, requeued_at FROM webhook_deliveries \
     WHERE status = 'pending' AND id > ? ORDER BY id LIMIT ?";

/// The oldest pending deliveries of one key up to an id (the partial index on pending rows).
const KEY_SQL: &str = "SELECT id, subscription_id, ordering_key, event_seq, event_id, attempts, \
     next_attempt_at, created_at, requeued_at FROM webhook_deliveries \
     WHERE status = 'pending' AND subscription_id = ? AND ordering_key = ? AND id <= ? \
     ORDER BY id LIMIT ?";

/// The oldest pending delivery of each key of one subscription up to an id (the partial
/// index on pending rows: one range of it).
const SUBSCRIPTION_HEADS_SQL: &str = "SELECT id, subscription_id, ordering_key, event_seq, \
     event_id, attempts, next_attempt_at, created_at, requeued_at FROM webhook_deliveries \
     WHERE id IN (SELECT MIN(id) FROM webhook_deliveries \
                  WHERE status = 'pending' AND subscription_id = ? AND id <= ? \
                  GROUP BY ordering_key) \
     ORDER BY id";

const SUBSCRIPTION_COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM webhook_deliveries \
     WHERE status = 'pending' AND subscription_id = ? AND id <= ?";

fn target_of(s: Subscription) -> Target {
    Target {
        id: s.id,
        active: s.enabled && s.deleted_at.is_none(),
        batch: Batching::of(&s),
        tenant_id: s.tenant_id,
        target_url: s.target_url,
        secret_auth_ref_uri: s.secret_auth_ref_uri,
    }
}

fn pending_of(r: &sea_orm::QueryResult) -> Result<Pending, DbErr> {
    let created_at: DateTime<Utc> = r.try_get("", "created_at")?;
    let requeued_at: Option<DateTime<Utc>> = r.try_get("", "requeued_at")?;
    Ok(Pending {
        id: r.try_get("", "id")?,
        subscription_id: r.try_get("", "subscription_id")?,
        ordering_key: r.try_get("", "ordering_key")?,
        event_seq: r.try_get("", "event_seq")?,
        event_id: r.try_get("", "event_id")?,
        attempts: r.try_get("", "attempts")?,
        next_attempt_at: r.try_get("", "next_attempt_at")?,
        queued_at: requeued_at.unwrap_or(created_at),
    })
}

/// Values per `IN (…)` list: batched deliveries can record tens of thousands at once, and
/// SQLite takes at most 32,766 variables in a statement.
const IN_CHUNK: usize = 5_000;

/// Rows per multi-row INSERT of deliveries (15 columns, well under SQLite's 32766 variables).
const INSERT_CHUNK: usize = 1000;

impl WebhookStore {
    pub(super) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        crate::store::begin_all_tenants(&self.db, true).await
    }

    /// Reads up to `limit` events after `consumer`'s cursor and queues one delivery per
    /// matching enabled subscription of each event's tenant, moving the cursor past them in
    /// the same transaction: a crash loses nothing and a pass never fans an event out twice
    /// (the unique `(subscription_id, event_seq)` index guards against a second relay too).
    ///
    /// # Errors
    /// [`DbErr`]; nothing is queued and the cursor does not move then.
    pub async fn fan_out(&self, consumer: &str, limit: u64) -> Result<FanOut, DbErr> {
        self.fan_out_until(consumer, limit, i64::MAX).await
    }

    /// [`WebhookStore::fan_out`], reading no event after `until` (the incident correlator's
    /// gate: events it has not decided on yet wait).
    ///
    /// # Errors
    /// [`DbErr`]; nothing is queued and the cursor does not move then.
    pub async fn fan_out_until(
        &self,
        consumer: &str,
        limit: u64,
        until: i64,
    ) -> Result<FanOut, DbErr> {
        let txn = self.begin().await?;
        let cursor = load_cursor(&txn, consumer).await?;
        let events = event::Entity::find()
            .filter(event::Column::Seq.gt(cursor))
            .filter(event::Column::Seq.lte(until))
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
        let subscriptions = webhook_subscription::Entity::find()
            .filter(webhook_subscription::Column::TenantId.is_in(tenants.iter().copied()))
            .filter(webhook_subscription::Column::DeletedAt.is_null())
            .filter(webhook_subscription::Column::Enabled.eq(true))
            .order_by_asc(webhook_subscription::Column::Id)
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
                if filter.admits(e) {
                    rows.push(webhook_delivery::ActiveModel {
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
            webhook_delivery::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([
                    webhook_delivery::Column::SubscriptionId,
                    webhook_delivery::Column::EventSeq,
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

    async fn pending_rows(
        &self,
        sql: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<Vec<Pending>, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = self.begin_read().await?;
        let rows = txn.query_all_raw(statement(backend, sql, values)).await?;
        txn.commit().await?;
        rows.iter().map(pending_of).collect()
    }

    /// Up to `limit` pending deliveries with an id above `after`, in id order: what was
    /// queued since the worker last looked (ids grow with each fan-out).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn pending_after(&self, after: i64, limit: u64) -> Result<Vec<Pending>, DbErr> {
        self.pending_rows(SCAN_SQL, vec![after.into(), (limit.max(1) as i64).into()])
            .await
    }

    /// The oldest `limit` pending deliveries of one (subscription, ordering key) with an id
    /// up to `upto`, in id order.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn pending_of_key(
        &self,
        subscription_id: Uuid,
        ordering_key: Uuid,
        upto: i64,
        limit: u64,
    ) -> Result<Vec<Pending>, DbErr> {
        self.pending_rows(
            KEY_SQL,
            vec![
                subscription_id.into(),
                ordering_key.into(),
                upto.into(),
                (limit.max(1) as i64).into(),
            ],
        )
        .await
    }

    /// The oldest pending delivery of each key of one subscription with an id up to `upto`,
    /// and how many pending deliveries it has up there, read in one snapshot.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn subscription_queue(
        &self,
        subscription_id: Uuid,
        upto: i64,
    ) -> Result<SubscriptionQueue, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = self.begin_read().await?;
        let values = || vec![subscription_id.into(), upto.into()];
        let heads = txn
            .query_all_raw(statement(backend, SUBSCRIPTION_HEADS_SQL, values()))
            .await?;
        let count = txn
            .query_one_raw(statement(backend, SUBSCRIPTION_COUNT_SQL, values()))
            .await?;
        txn.commit().await?;
        let pending: i64 = match count {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        Ok(SubscriptionQueue {
            heads: heads.iter().map(pending_of).collect::<Result<_, _>>()?,
            pending: u64::try_from(pending).unwrap_or(0),
        })
    }

    /// The highest delivery id there is (0 for none): where the worker's scan starts.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn last_delivery_id(&self) -> Result<i64, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = self.begin_read().await?;
        let row = txn
            .query_one_raw(statement(
                backend,
                "SELECT COALESCE(MAX(id), 0) AS id FROM webhook_deliveries",
                vec![],
            ))
            .await?;
        txn.commit().await?;
        match row {
            Some(row) => row.try_get("", "id"),
            None => Ok(0),
        }
    }

    /// Every live, enabled subscription.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn active_targets(&self) -> Result<Vec<Target>, DbErr> {
        let txn = self.begin_read().await?;
        let rows = webhook_subscription::Entity::find()
            .filter(webhook_subscription::Column::DeletedAt.is_null())
            .filter(webhook_subscription::Column::Enabled.eq(true))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().map(target_of).collect())
    }

    /// The subscriptions with these ids, deleted ones included (inactive); an id that was
    /// never a subscription is absent.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn targets(&self, ids: &[Uuid]) -> Result<Vec<Target>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.begin_read().await?;
        let rows = webhook_subscription::Entity::find()
            .filter(webhook_subscription::Column::Id.is_in(ids.iter().copied()))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().map(target_of).collect())
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
        let mut rows = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(IN_CHUNK) {
            rows.extend(
                event::Entity::find()
                    .filter(event::Column::Seq.is_in(chunk.iter().copied()))
                    .all(&txn)
                    .await?,
            );
        }
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
    pub(super) async fn begin_read(&self) -> Result<DatabaseTransaction, DbErr> {
        crate::store::begin_all_tenants(&self.db, false).await
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
            for ids in ids.chunks(IN_CHUNK) {
                webhook_delivery::Entity::update_many()
                    .col_expr(
                        webhook_delivery::Column::Status,
                        Expr::value(DeliveryStatus::Delivered.as_str()),
                    )
                    .col_expr(
                        webhook_delivery::Column::Attempts,
                        sea_orm::sea_query::ExprTrait::add(
                            Expr::col(webhook_delivery::Column::Attempts),
                            1,
                        ),
                    )
                    .col_expr(webhook_delivery::Column::LastAttemptAt, Expr::value(at))
                    .col_expr(
                        webhook_delivery::Column::LastStatusCode,
                        Expr::value(i32::from(code)),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastError,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(at))
                    .filter(webhook_delivery::Column::Id.is_in(ids.iter().copied()))
                    .exec(&txn)
                    .await?;
            }
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
            webhook_delivery::Entity::update_many()
                .col_expr(
                    webhook_delivery::Column::Status,
                    Expr::value(status.as_str()),
                )
                .col_expr(
                    webhook_delivery::Column::Attempts,
                    sea_orm::sea_query::ExprTrait::add(
                        Expr::col(webhook_delivery::Column::Attempts),
                        1,
                    ),
                )
                .col_expr(webhook_delivery::Column::LastAttemptAt, Expr::value(*at))
                .col_expr(
                    webhook_delivery::Column::LastStatusCode,
                    Expr::value(code.map(i32::from)),
                )
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(clip(error)),
                )
                .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next))
                .filter(webhook_delivery::Column::Id.eq(id))
                .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await
    }
}
