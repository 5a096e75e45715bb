//! Webhook subscriptions and their deliveries.
//!
//! - A tenant manages its subscriptions through [`TenantStore`](crate::store::TenantStore) (every change audited in the
//!   same transaction) and reads their deliveries.
//! - The webhook relay and delivery worker use [`WebhookStore`], which sees every tenant: the
//!   relay fans the outbox out into `webhook_deliveries` rows ([`WebhookStore::fan_out`]), moving
//!   its cursor in the same transaction; the worker reads the rows queued since it last looked
//!   ([`WebhookStore::pending_after`]), re-reads one key or one subscription when its memory
//!   of them is incomplete ([`WebhookStore::pending_of_key`],
//!   [`WebhookStore::subscription_queue`]), and records attempts in batches
//!   ([`WebhookStore::record`]), and keeps the certificate each target presented
//!   ([`WebhookStore::record_target_certificate`]), announcing one about to expire once.

use std::collections::HashSet;

use entity::{webhook_delivery, webhook_subscription};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::events::TypeFilter;
use crate::events::incidents::IncidentMembers;

const KIND: &str = "webhook subscription";

/// A stored subscription.
pub type Subscription = webhook_subscription::Model;
/// A stored delivery.
pub type Delivery = webhook_delivery::Model;

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
    pub secret_auth_ref_uri: String,
    pub enabled: bool,
    /// Whether the status events of an open incident's members are delivered one by one.
    pub incident_members: IncidentMembers,
    /// Batched delivery; `None` for one event per POST.
    pub batch: Option<Batching>,
}

/// Batched delivery of a subscription: CloudEvents JSON batches of at most `max_events`
/// events, sent when that many are due or when the oldest due one has waited `max_delay_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    pub max_events: u32,
    pub max_delay_ms: u32,
}

impl Batching {
    /// The batching of a stored subscription (`None` when it sends one event per POST).
    pub fn of(s: &Subscription) -> Option<Self> {
        let max_events = u32::try_from(s.batch_max_events?).ok().filter(|n| *n > 0)?;
        let max_delay_ms = s
            .batch_max_delay_ms
            .and_then(|ms| u32::try_from(ms).ok())
            .unwrap_or(0);
        Some(Self {
            max_events,
            max_delay_ms,
        })
    }
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
    /// Whether events that are part of an incident are delivered.
    incident_members: IncidentMembers,
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
            incident_members: IncidentMembers::parse(&s.incident_members),
        }
    }

    /// Whether an outbox event goes to the subscription: its type and integration match, and
    /// it is not an incident member's event the subscription leaves to the incident.
    pub fn admits(&self, e: &entity::event::Model) -> bool {
        self.incident_members.admits(e.incident_id) && self.matches(&e.event_type, e.integration_id)
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
        "secretAuthRef": m.secret_auth_ref_uri,
        "enabled": m.enabled,
        "incidentMembers": m.incident_members,
        "version": m.version,
        "batch": Batching::of(m).map(|b| json!({"maxEvents": b.max_events, "maxDelayMs": b.max_delay_ms})),
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

mod certificates;
mod queue;
mod subscriptions;
#[cfg(test)]
mod tests;

pub use certificates::TargetCertificate;
pub use queue::{FanOut, OutboxEvent, Outcome, Pending, SubscriptionQueue, Target, WebhookStore};
