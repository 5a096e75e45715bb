//! The `webhook_deliveries` table: one row per event and matching subscription, from queued to
//! delivered or dead-lettered.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub subscription_id: Uuid,
    pub event_seq: i64,
    pub event_id: Uuid,
    /// The event's CloudEvents `type`, so the delivery list needs no join with the outbox.
    pub event_type: String,
    /// Deliveries with the same key go out one at a time, in `id` order: the integration's id
    /// (the nil id for events of no integration).
    pub ordering_key: Uuid,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    /// When a dead delivery was last put back in the queue by hand; its dead-letter clock
    /// runs from here instead of `created_at`.
    pub requeued_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
