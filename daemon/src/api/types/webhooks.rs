//! Bodies of `/api/v1/webhook-subscriptions`: webhook subscriptions and their deliveries.

use actors::store::webhooks::{Batching, Delivery, DeliveryStatus, Subscription};
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// A webhook subscription: where the tenant's health events go, which of them, and how they
/// are signed.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookSubscription {
    pub id: Uuid,
    pub name: String,
    /// Where events are POSTed as `application/cloudevents+json`.
    pub target_url: String,
    /// CloudEvents types delivered: exact types or prefixes such as
    /// `dev.stellaops.integration.health.*`; empty for every type.
    pub event_types: Vec<String>,
    /// Integrations whose events are delivered; empty for all of the tenant's.
    pub integration_ids: Vec<Uuid>,
    /// `authref://<backend>/<path>[#key]` naming the HMAC signing secret.
    pub secret_auth_ref: String,
    /// A disabled subscription gets no new deliveries, and its queued ones wait.
    pub enabled: bool,
    /// Increases with every change; sent as the `ETag`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether the status events of an open incident's members are delivered one by one.
    pub incident_members: IncidentMembers,
    /// Batched delivery; null for one event per POST.
    #[oai(nullable)]
    pub batch: Option<WebhookBatch>,
    /// When the TLS certificate the target presented on its latest delivery expires; null
    /// before the first delivery over `https`, and after `targetUrl` changes. Within
    /// `certificate_warning_days` of it, one
    /// `dev.stellaops.integration.subscription.certificate_expiring` event is sent per
    /// certificate; once expired, deliveries fail (`lastError` names the TLS failure).
    #[oai(nullable)]
    pub target_certificate_expires_at: Option<DateTime<Utc>>,
}

/// Whether a subscription gets the status events of an open incident's members one by one
/// (`deliver`), or only the incident's own events (`suppress`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum IncidentMembers {
    Suppress,
    Deliver,
}

impl From<actors::events::incidents::IncidentMembers> for IncidentMembers {
    fn from(m: actors::events::incidents::IncidentMembers) -> Self {
        match m {
            actors::events::incidents::IncidentMembers::Suppress => IncidentMembers::Suppress,
            actors::events::incidents::IncidentMembers::Deliver => IncidentMembers::Deliver,
        }
    }
}

impl From<IncidentMembers> for actors::events::incidents::IncidentMembers {
    fn from(m: IncidentMembers) -> Self {
        match m {
            IncidentMembers::Suppress => actors::events::incidents::IncidentMembers::Suppress,
            IncidentMembers::Deliver => actors::events::incidents::IncidentMembers::Deliver,
        }
    }
}

/// Batched delivery: the due events go out as `application/cloudevents-batch+json` (a JSON
/// array of structured CloudEvents, in order per integration), one POST and one signature
/// per batch, when `maxEvents` are due or the oldest has waited `maxDelayMs`. A batch that
/// is not answered 2xx is retried as a whole.
#[derive(Debug, Clone, Copy, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookBatch {
    /// Most events per POST, 1 to 1000.
    pub max_events: u32,
    /// Longest the oldest due event waits for a batch to fill, 0 to 60000 ms.
    pub max_delay_ms: u32,
}

impl From<Batching> for WebhookBatch {
    fn from(b: Batching) -> Self {
        Self {
            max_events: b.max_events,
            max_delay_ms: b.max_delay_ms,
        }
    }
}

impl From<Subscription> for WebhookSubscription {
    fn from(m: Subscription) -> Self {
        let batch = Batching::of(&m).map(Into::into);
        Self {
            id: m.id,
            name: m.name,
            target_url: m.target_url,
            event_types: serde_json::from_value(m.event_types).unwrap_or_default(),
            integration_ids: serde_json::from_value(m.integration_ids).unwrap_or_default(),
            secret_auth_ref: m.secret_auth_ref_uri,
            enabled: m.enabled,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
            incident_members: actors::events::incidents::IncidentMembers::parse(
                &m.incident_members,
            )
            .into(),
            batch,
            target_certificate_expires_at: m.target_certificate_expires_at,
        }
    }
}

/// A subscription to create, or the full replacement of one.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSubscriptionInput {
    /// 1 to 100 characters.
    pub name: String,
    /// An `http` or `https` URL without credentials or fragment. Its host must not be, or
    /// resolve to, a loopback, private or link-local address unless the daemon's
    /// `[connectors.outbound] allow_private_networks` allows it.
    pub target_url: String,
    /// CloudEvents types to deliver (exact, or a prefix ending in `.*`); absent or empty for
    /// every type. At most 32.
    pub event_types: Option<Vec<String>>,
    /// Only events of these integrations of the tenant; absent or empty for all. At most 100.
    pub integration_ids: Option<Vec<Uuid>>,
    /// `authref://<backend>/<path>[#key]` naming the signing secret (never the secret
    /// itself), in the caller's tenant namespace; it is resolved at each delivery. Required
    /// (under this name or its former one).
    pub secret_auth_ref: Option<String>,
    /// The former name of `secretAuthRef`, still accepted (not with a different
    /// `secretAuthRef`).
    #[oai(deprecated)]
    pub secret_auth_ref_uri: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// `suppress` (default): while an incident is open, its members' status events are not
    /// delivered one by one, only the incident's; `deliver`: both.
    pub incident_members: Option<IncidentMembers>,
    /// Batched delivery; absent or null for one event per POST.
    pub batch: Option<WebhookBatch>,
}

/// A page of subscriptions, oldest first.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookSubscriptionPage {
    pub items: Vec<WebhookSubscription>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt or a retry (or for an earlier event of its integration).
    Pending,
    /// The target answered 2xx.
    Delivered,
    /// Given up: still failing after the dead-letter time, or its subscription was deleted.
    /// `POST .../retry` puts it back in the queue.
    Dead,
}

impl DeliveryState {
    pub fn to_store(self) -> DeliveryStatus {
        match self {
            DeliveryState::Pending => DeliveryStatus::Pending,
            DeliveryState::Delivered => DeliveryStatus::Delivered,
            DeliveryState::Dead => DeliveryStatus::Dead,
        }
    }

    fn from_store(s: &str) -> Self {
        match DeliveryStatus::parse(s) {
            Some(DeliveryStatus::Delivered) => DeliveryState::Delivered,
            Some(DeliveryStatus::Dead) => DeliveryState::Dead,
            _ => DeliveryState::Pending,
        }
    }
}

/// One event's delivery to one subscription.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: i64,
    /// The CloudEvents `id`, also sent as `X-Stella-Event-Id` and `Idempotency-Key`.
    pub event_id: Uuid,
    /// The CloudEvents `type`.
    pub event_type: String,
    /// The integration the event is about.
    #[oai(nullable)]
    pub integration_id: Option<Uuid>,
    pub status: DeliveryState,
    /// Attempts made so far.
    pub attempts: i32,
    /// The target's status code at the last attempt; null when it did not answer.
    #[oai(nullable)]
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed.
    #[oai(nullable)]
    pub last_error: Option<String>,
    #[oai(nullable)]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while pending.
    #[oai(nullable)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for WebhookDelivery {
    fn from(d: Delivery) -> Self {
        let status = DeliveryState::from_store(&d.status);
        Self {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            integration_id: (!d.ordering_key.is_nil()).then_some(d.ordering_key),
            status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_at,
            next_attempt_at: (status == DeliveryState::Pending).then_some(d.next_attempt_at),
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDeliveryPage {
    pub items: Vec<WebhookDelivery>,
    /// Pass as `cursor` for older deliveries; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// How a test delivery went.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookTestResult {
    /// The test event's id (type `dev.stellaops.webhook.test`).
    pub event_id: Uuid,
    /// The target answered 2xx.
    pub delivered: bool,
    #[oai(nullable)]
    pub status_code: Option<u16>,
    /// Why it was not delivered.
    #[oai(nullable)]
    pub error: Option<String>,
    pub latency_ms: u64,
}
