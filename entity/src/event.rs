//! The `events` table: the transactional outbox of health events.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Outbox order, which is commit order (one writer appends). SSE uses it as the event id
    /// a client resumes from.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// The CloudEvents `id`: the idempotency key of every delivery of this event.
    pub id: Uuid,
    pub tenant_id: String,
    pub integration_id: Option<Uuid>,
    /// The CloudEvents `type`, such as `dev.stellaops.integration.health.changed`.
    pub event_type: String,
    pub time: DateTimeUtc,
    /// The whole event in CloudEvents 1.0 JSON, as delivered.
    pub payload: Json,
    /// The incident this event's integration was part of when the event was decided: such
    /// events are not delivered one by one where the channel suppresses incident members.
    pub incident_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
