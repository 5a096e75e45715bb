//! The outbox: appending events (only the result writer does, in the transaction of the
//! status change they report), reading a tenant's events after a sequence number (SSE), and
//! the relays' system-wide reads and cursors.

use entity::{event, event_cursor};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TryInsertResult,
};
use uuid::Uuid;

use super::{SystemStore, TenantStore};
use crate::error::CatalogError;
use crate::events::{NewEvent, StoredEvent, TypeFilter};

/// Which of a tenant's events to read.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only events after this sequence number.
    pub after: i64,
    pub types: TypeFilter,
    pub integration_id: Option<Uuid>,
    pub limit: u64,
}

impl EventQuery {
    pub fn matches(&self, e: &StoredEvent) -> bool {
        e.seq > self.after
            && self.types.matches(&e.event_type)
            && self
                .integration_id
                .is_none_or(|id| e.integration_id == Some(id))
    }
}

/// Appends events in order; returns them with their sequence numbers. An event whose id is
/// already stored (a retried batch whose commit did land) is skipped.
pub(crate) async fn append<C: ConnectionTrait>(
    db: &C,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = events.iter().map(|e| event::ActiveModel {
        seq: NotSet,
        id: Set(e.id),
        tenant_id: Set(e.tenant.to_string()),
        integration_id: Set(e.integration_id),
        event_type: Set(e.kind.type_name().to_owned()),
        time: Set(e.time),
        payload: Set(e.to_cloud_event()),
        incident_id: Set(None),
    });
    let inserted = event::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([event::Column::Id])
        .exec_with_returning_many(db)
        .await?;
    let mut stored = match inserted {
        TryInsertResult::Inserted(rows) => rows,
        TryInsertResult::Empty | TryInsertResult::Conflicted => Vec::new(),
    };
    stored.sort_by_key(|e| e.seq);
    Ok(stored)
}

impl TenantStore {
    /// The tenant's events after `q.after`, oldest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn events_after(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, CatalogError> {
        let mut select = event::Entity::find()
            .filter(event::Column::TenantId.eq(self.tenant.as_str()))
            .filter(event::Column::Seq.gt(q.after));
        if !q.types.entries().is_empty() {
            select = select.filter(event::Column::EventType.is_in(q.types.types()));
        }
        if let Some(id) = q.integration_id {
            select = select.filter(event::Column::IntegrationId.eq(id));
        }
        Ok(self
            .read_all(
                select
                    .order_by_asc(event::Column::Seq)
                    .limit(q.limit.clamp(1, 1000)),
            )
            .await?)
    }
}

impl SystemStore {
    /// Events of every tenant after `after`, oldest first.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn events_after(&self, after: i64, limit: u64) -> Result<Vec<StoredEvent>, DbErr> {
        self.events_between(after, i64::MAX, limit).await
    }

    /// Events of every tenant after `after` and at most `until`, oldest first.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn events_between(
        &self,
        after: i64,
        until: i64,
        limit: u64,
    ) -> Result<Vec<StoredEvent>, DbErr> {
        let txn = self.begin().await?;
        let rows = event::Entity::find()
            .filter(event::Column::Seq.gt(after))
            .filter(event::Column::Seq.lte(until))
            .order_by_asc(event::Column::Seq)
            .limit(limit.max(1))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows)
    }

    /// How far `consumer` has read the outbox (0 when it never has).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn cursor(&self, consumer: &str) -> Result<i64, DbErr> {
        let txn = self.begin().await?;
        let seq = load_cursor(&txn, consumer).await?;
        txn.commit().await?;
        Ok(seq)
    }

    /// Records that `consumer` has handed on every event up to `seq`.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn set_cursor(&self, consumer: &str, seq: i64) -> Result<(), DbErr> {
        let txn = self.begin().await?;
        save_cursor(&txn, consumer, seq).await?;
        txn.commit().await
    }
}

/// Reads a relay's cursor inside a caller's transaction.
pub(crate) async fn load_cursor<C: ConnectionTrait>(db: &C, consumer: &str) -> Result<i64, DbErr> {
    Ok(event_cursor::Entity::find_by_id(consumer.to_owned())
        .one(db)
        .await?
        .map_or(0, |c| c.seq))
}

/// Moves a relay's cursor inside a caller's transaction (so the cursor moves together with
/// what the relay wrote).
pub(crate) async fn save_cursor<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
    seq: i64,
) -> Result<(), DbErr> {
    event_cursor::Entity::insert(event_cursor::ActiveModel {
        consumer: Set(consumer.to_owned()),
        seq: Set(seq),
    })
    .on_conflict(
        OnConflict::column(event_cursor::Column::Consumer)
            .update_column(event_cursor::Column::Seq)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
