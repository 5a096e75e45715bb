//! Health events: what happened to an integration, as CloudEvents 1.0, written to the outbox
//! in the same transaction as the status change they report, then handed on to SSE clients
//! here, and to webhook subscriptions and NATS by the sinks in [`crate::sinks`].
//!
//! # Layout
//! - [`EventKind`] and [`NewEvent`]: the event types and how one becomes a CloudEvent.
//! - [`alerts`]: noise control, deciding which transitions become events (reminders while
//!   unhealthy, recoveries, flap detection, maintenance windows).
//! - [`incidents`]: correlation of shared outages into one incident per tenant and failure
//!   domain, and the suppression of its members' events on webhooks and NATS.
//! - [`maintenance`]: maintenance windows and their recurrence.
//! - [`hub`]: live fan-out of committed events to SSE streams.
//! - [`clock`]: wall time that follows tokio's clock, so paused-clock tests drive it.
//! - [`metrics`]: events written, deliveries, delivery delay, relayed events.

pub mod alerts;
pub mod clock;
pub mod hub;
pub mod incidents;
pub mod maintenance;
pub mod metrics;

#[cfg(test)]
mod paused_tests;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// How the health engine turns status changes into events, and where committed events go.
#[derive(Clone, Debug, Default)]
pub struct Alerting {
    pub settings: alerts::AlertSettings,
    pub hub: hub::EventHub,
    pub clock: clock::Clock,
    /// The egress self-check's verdict: during the hub's own outage, failures it can explain
    /// are recorded but change no status.
    pub egress: incidents::EgressFlag,
}

/// The kinds of event, each with its CloudEvents `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The integration's status changed.
    HealthChanged,
    /// The integration is healthy again after being degraded, unhealthy or in error.
    HealthRecovered,
    /// The integration is still unhealthy (or in error), repeated at the reminder interval.
    HealthReminder,
    /// The status changes too often to alert on each change (`flapping: true`), or has become
    /// stable again (`flapping: false`).
    HealthFlapping,
    /// The integration's credential expires soon.
    CredentialExpiring,
    /// The integration's connector plugin keeps crashing its monitor; it is marked `error`.
    PluginCrashLoop,
    /// An API key of the tenant expires soon (no integration).
    ApiKeyExpiring,
    /// Many of a tenant's integrations fail behind one failure domain: one incident.
    IncidentOpened,
    /// An open incident's members changed (coalesced).
    IncidentUpdated,
    /// The incident is over.
    IncidentResolved,
    /// The TLS certificate of a webhook subscription's target expires soon (no integration).
    SubscriptionCertificateExpiring,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::HealthChanged,
        EventKind::HealthRecovered,
        EventKind::HealthReminder,
        EventKind::HealthFlapping,
        EventKind::CredentialExpiring,
        EventKind::PluginCrashLoop,
        EventKind::ApiKeyExpiring,
        EventKind::IncidentOpened,
        EventKind::IncidentUpdated,
        EventKind::IncidentResolved,
        EventKind::SubscriptionCertificateExpiring,
    ];

    /// The CloudEvents `type`.
    pub const fn type_name(self) -> &'static str {
        match self {
            EventKind::HealthChanged => "dev.stellaops.integration.health.changed",
            EventKind::HealthRecovered => "dev.stellaops.integration.health.recovered",
            EventKind::HealthReminder => "dev.stellaops.integration.health.reminder",
            EventKind::HealthFlapping => "dev.stellaops.integration.health.flapping",
            EventKind::CredentialExpiring => "dev.stellaops.integration.credential.expiring",
            EventKind::PluginCrashLoop => "dev.stellaops.integration.plugin.crashloop",
            EventKind::ApiKeyExpiring => "dev.stellaops.integration.apikey.expiring",
            EventKind::IncidentOpened => "dev.stellaops.integration.incident.opened",
            EventKind::IncidentUpdated => "dev.stellaops.integration.incident.updated",
            EventKind::IncidentResolved => "dev.stellaops.integration.incident.resolved",
            EventKind::SubscriptionCertificateExpiring => {
                "dev.stellaops.integration.subscription.certificate_expiring"
            }
        }
    }

    pub fn parse(type_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == type_name)
    }
}

/// A filter on event types: exact types, or prefixes written `dev.stellaops.integration.*`.
/// Empty matches every type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeFilter(Vec<String>);

/// A type filter entry that names no event type and no prefix of one. The entry is kept for
/// the caller but not shown: the message reaches API answers, which never repeat input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type")]
pub struct UnknownEventType(pub String);

impl TypeFilter {
    /// Validates each entry against the known types.
    ///
    /// # Errors
    /// [`UnknownEventType`] for the first entry that matches no type.
    pub fn new(entries: impl IntoIterator<Item = String>) -> Result<Self, UnknownEventType> {
        let entries: Vec<String> = entries.into_iter().collect();
        for entry in &entries {
            let known = EventKind::ALL
                .iter()
                .any(|k| entry_matches(entry, k.type_name()));
            if !known {
                return Err(UnknownEventType(entry.clone()));
            }
        }
        Ok(Self(entries))
    }

    pub fn matches(&self, type_name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|e| entry_matches(e, type_name))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// The concrete types this filter matches.
    pub fn types(&self) -> Vec<&'static str> {
        EventKind::ALL
            .iter()
            .map(|k| k.type_name())
            .filter(|t| self.matches(t))
            .collect()
    }
}

fn entry_matches(entry: &str, type_name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => prefix.ends_with('.') && type_name.starts_with(prefix),
        None => entry == type_name,
    }
}

/// An event to append to the outbox.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The CloudEvents `id`, fixed when the event is decided so a retried write cannot
    /// store it twice.
    pub id: Uuid,
    pub kind: EventKind,
    pub tenant: Arc<str>,
    pub integration_id: Option<Uuid>,
    pub time: DateTime<Utc>,
    /// The CloudEvents `data`.
    pub data: Value,
}

impl NewEvent {
    pub fn new(
        kind: EventKind,
        tenant: Arc<str>,
        integration_id: Option<Uuid>,
        time: DateTime<Utc>,
        data: Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            tenant,
            integration_id,
            time,
            data,
        }
    }

    /// The event in CloudEvents 1.0 structured JSON.
    pub fn to_cloud_event(&self) -> Value {
        let id = self.id;
        let source = match self.integration_id {
            Some(integration) => format!("/tenants/{}/integrations/{integration}", self.tenant),
            None => format!("/tenants/{}", self.tenant),
        };
        let mut event = json!({
            "specversion": "1.0",
            "id": id.to_string(),
            "source": source,
            "type": self.kind.type_name(),
            "time": self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "tenant": &*self.tenant,
            "data": self.data,
        });
        if let Some(integration) = self.integration_id {
            event["subject"] = Value::String(integration.to_string());
        }
        event
    }
}

/// An event as stored in the outbox: its order (`seq`) and its CloudEvent.
pub type StoredEvent = entity::event::Model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_events_carry_the_required_attributes() {
        let integration = Uuid::now_v7();
        let event = NewEvent::new(
            EventKind::HealthChanged,
            "acme".into(),
            Some(integration),
            DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
                .unwrap()
                .to_utc(),
            json!({"status": "unhealthy"}),
        );
        let id = event.id;
        let ce = event.to_cloud_event();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], id.to_string());
        assert_eq!(ce["type"], "dev.stellaops.integration.health.changed");
        assert_eq!(
            ce["source"],
            format!("/tenants/acme/integrations/{integration}")
        );
        assert_eq!(ce["subject"], integration.to_string());
        assert_eq!(ce["time"], "2026-11-28T10:00:00.000Z");
        assert_eq!(ce["tenant"], "acme");
        assert_eq!(ce["data"]["status"], "unhealthy");
    }

    #[test]
    fn type_filters_take_exact_types_and_dotted_prefixes() {
        let all = TypeFilter::default();
        assert!(all.matches(EventKind::HealthReminder.type_name()));
        let health = TypeFilter::new(["dev.stellaops.integration.health.*".to_owned()]).unwrap();
        assert!(health.matches(EventKind::HealthFlapping.type_name()));
        assert!(!health.matches(EventKind::CredentialExpiring.type_name()));
        let exact =
            TypeFilter::new(["dev.stellaops.integration.health.recovered".to_owned()]).unwrap();
        assert!(exact.matches(EventKind::HealthRecovered.type_name()));
        assert!(!exact.matches(EventKind::HealthChanged.type_name()));
        assert!(TypeFilter::new(["dev.stellaops.integration.nope".to_owned()]).is_err());
        assert!(TypeFilter::new(["dev.stellaops.integ*".to_owned()]).is_err());
        let unknown = TypeFilter::new(["SECRETVALUE".to_owned()]).unwrap_err();
        assert_eq!(unknown, UnknownEventType("SECRETVALUE".into()));
        assert!(!unknown.to_string().contains("SECRETVALUE"));
    }
}
