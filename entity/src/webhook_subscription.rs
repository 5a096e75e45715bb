//! The `webhook_subscriptions` table: a tenant's webhook targets for health events.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub target_url: String,
    /// Event types delivered (a JSON array of strings); empty means all.
    pub event_types: Json,
    /// Integrations whose events are delivered (a JSON array of ids); empty means all.
    pub integration_ids: Json,
    /// `authref://...` naming the HMAC signing secret; the secret itself is never stored.
    pub secret_auth_ref_uri: String,
    pub enabled: bool,
    /// Optimistic-concurrency version, exposed as the ETag.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// `suppress` (default) or `deliver`: whether the status events of an open incident's
    /// members are delivered one by one.
    pub incident_members: String,
    /// Batched delivery: at most this many events per POST; null for one event per POST.
    pub batch_max_events: Option<i32>,
    /// Batched delivery: how long the oldest due event may wait for a batch to fill.
    pub batch_max_delay_ms: Option<i32>,
    /// The `notAfter` of the TLS certificate the target presented on its latest delivery.
    pub target_certificate_expires_at: Option<DateTimeUtc>,
    /// The `notAfter` of the target certificate already announced as expiring.
    pub target_certificate_warned_for: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
