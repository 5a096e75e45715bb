//! Request and response types of the REST API. Storage models never appear on the wire: they
//! are converted here, so the schema of either can change on its own.

pub mod history;
pub mod incidents;
pub mod webhooks;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde_json::Value;
use uuid::Uuid;

/// The health status of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// Not checked yet.
    Unknown,
    Healthy,
    /// Working, with a problem worth attention (such as credentials about to expire).
    Degraded,
    Unhealthy,
    /// Monitoring is paused.
    Paused,
    /// The health check itself keeps failing (for instance a crashing connector).
    Error,
}

impl IntegrationStatus {
    /// The stored form.
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Paused => "paused",
            Self::Error => "error",
        }
    }

    fn from_db(s: &str) -> Self {
        match s {
            "healthy" => Self::Healthy,
            "degraded" => Self::Degraded,
            "unhealthy" => Self::Unhealthy,
            "paused" => Self::Paused,
            "error" => Self::Error,
            _ => Self::Unknown,
        }
    }
}

/// A registered integration.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Integration {
    pub id: Uuid,
    pub tenant_id: String,
    /// The provider type, such as `gitlab`.
    #[oai(rename = "type")]
    pub provider_type: String,
    pub name: String,
    /// Provider-specific configuration (never a secret).
    pub config: Value,
    /// Where the credentials are: `authref://<backend>/<path>[#key]`.
    #[oai(nullable)]
    pub auth_ref: Option<String>,
    pub status: IntegrationStatus,
    /// Machine-readable reason of a non-healthy status.
    #[oai(nullable)]
    pub status_reason: Option<String>,
    /// When the status last changed after a check.
    #[oai(nullable)]
    pub last_checked_at: Option<DateTime<Utc>>,
    /// Scheduled checks are paused.
    pub monitoring_paused: bool,
    /// This integration's check interval; the daemon's default when null.
    #[oai(nullable)]
    pub check_interval_seconds: Option<i32>,
    /// Increases with every change; sent as the `ETag`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entity::integration::Model> for Integration {
    fn from(m: entity::integration::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: m.tenant_id,
            provider_type: m.provider_type,
            name: m.name,
            config: m.config_json,
            auth_ref: m.auth_ref_uri,
            status: IntegrationStatus::from_db(&m.status),
            status_reason: m.status_reason,
            last_checked_at: m.last_checked_at,
            monitoring_paused: m.monitoring_paused,
            check_interval_seconds: m.check_interval_seconds,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A page of integrations.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IntegrationPage {
    pub items: Vec<Integration>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// A request to register an integration.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationCreate {
    /// The provider type; one of the registered connectors.
    #[oai(rename = "type")]
    pub provider_type: String,
    /// Unique among the tenant's integrations; 1 to 100 characters.
    pub name: String,
    /// Provider-specific configuration, a JSON object of at most 64 KiB. Credentials are
    /// refused here: reference them with `authRef`.
    pub config: Option<Value>,
    /// `authref://<backend>/<path>[#key]`, with backend `vault`, `env` or `file`, in the
    /// caller's tenant namespace.
    pub auth_ref: Option<String>,
    /// The former name of `authRef`, still accepted (not with a different `authRef`).
    #[oai(deprecated)]
    pub auth_ref_uri: Option<String>,
}

/// The credential reference a body names, under its name or its former one.
///
/// # Errors
/// 422 when both names are given with different references.
pub fn renamed_field(
    field: &str,
    former: &str,
    value: Option<String>,
    former_value: Option<String>,
) -> Result<Option<String>, super::error::ApiError> {
    match (value, former_value) {
        (Some(v), Some(f)) if v != f => Err(super::error::ApiError::invalid(
            field,
            format!("{former} is its former name; give one of them"),
        )),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

/// A replacement of an integration's mutable fields (its type cannot change).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationUpdate {
    /// The integration's provider type, which cannot change. It selects the `config` schema
    /// that applies; when given, it must be the integration's type. Omitting it is still
    /// accepted, though the document requires it for the variant to be chosen.
    #[oai(rename = "type")]
    pub provider_type: Option<String>,
    pub name: String,
    pub config: Option<Value>,
    /// As in a registration.
    pub auth_ref: Option<String>,
    /// The former name of `authRef`, still accepted (not with a different `authRef`).
    #[oai(deprecated)]
    pub auth_ref_uri: Option<String>,
}

/// The result of one health check.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthCheckResult {
    pub status: IntegrationStatus,
    /// Machine-readable reason, such as `auth_failed` or `timeout`.
    #[oai(nullable)]
    pub reason: Option<String>,
    /// A safe, human-readable explanation.
    #[oai(nullable)]
    pub message: Option<String>,
    pub latency_ms: i64,
    pub checked_at: DateTime<Utc>,
    /// When the credential the check used expires, where the provider tells.
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the provider endpoint's TLS certificate expires (its `notAfter`).
    #[oai(nullable)]
    pub certificate_expires_at: Option<DateTime<Utc>>,
    /// Requests left in the provider's quota window, where its answer tells.
    #[oai(nullable)]
    pub quota_remaining: Option<u64>,
    /// Requests the provider's quota window allows.
    #[oai(nullable)]
    pub quota_limit: Option<u64>,
    /// When the provider's quota window resets.
    #[oai(nullable)]
    pub quota_reset_at: Option<DateTime<Utc>>,
}

impl IntegrationStatus {
    pub fn from_engine(s: actors::health::Status) -> Self {
        Self::from_db(s.as_str())
    }

    fn from_health(h: connectors::Health) -> Self {
        Self::from_db(h.as_str())
    }
}

impl From<actors::health::CheckResult> for HealthCheckResult {
    fn from(r: actors::health::CheckResult) -> Self {
        let d = r.details.map(|d| *d).unwrap_or_default();
        Self {
            status: IntegrationStatus::from_health(r.health),
            reason: r.reason.map(|r| r.as_str().to_owned()),
            message: r.message,
            latency_ms: r.latency_ms,
            checked_at: r.checked_at,
            expires_at: d.credential_expires_at,
            certificate_expires_at: d.certificate_expires_at,
            quota_remaining: d.quota.map(|q| q.remaining),
            quota_limit: d.quota.and_then(|q| q.limit),
            quota_reset_at: d.quota.and_then(|q| q.reset_at),
        }
    }
}

/// How an integration is monitored.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitoringSettings {
    /// Pause (true) or resume (false) scheduled checks.
    pub paused: bool,
    /// Seconds between checks (10 to 86400); null for the daemon's default.
    #[oai(nullable)]
    pub interval_seconds: Option<i32>,
}

/// One stored check result.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthHistoryEntry {
    /// `healthy`, `degraded`, `unhealthy`, or `rate_limited` (a pause, not a failure).
    pub status: String,
    #[oai(nullable)]
    pub reason: Option<String>,
    #[oai(nullable)]
    pub message: Option<String>,
    pub latency_ms: i64,
    pub checked_at: DateTime<Utc>,
}

impl From<actors::store::health::CheckEntry> for HealthHistoryEntry {
    fn from(e: actors::store::health::CheckEntry) -> Self {
        Self {
            status: e.status,
            reason: e.reason,
            message: e.error_message,
            latency_ms: e.latency_ms,
            checked_at: e.checked_at,
        }
    }
}

/// Share of checks that were not unhealthy, over three windows (null without checks).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct UptimeWindows {
    #[oai(nullable)]
    pub last24h: Option<f64>,
    #[oai(nullable)]
    pub last7d: Option<f64>,
    #[oai(nullable)]
    pub last30d: Option<f64>,
}

/// An integration's health: live state from its monitor, uptime, and a page of history.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IntegrationHealth {
    pub status: IntegrationStatus,
    #[oai(nullable)]
    pub status_reason: Option<String>,
    /// The latest check since the monitor started.
    #[oai(nullable)]
    pub last_check: Option<HealthCheckResult>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When the next scheduled check is due; null while paused or in flight.
    #[oai(nullable)]
    pub next_check_at: Option<DateTime<Utc>>,
    pub check_in_flight: bool,
    pub monitoring_paused: bool,
    /// The interval in force, in seconds.
    pub interval_seconds: i64,
    pub uptime: UptimeWindows,
    /// Stored results, newest first.
    pub history: Vec<HealthHistoryEntry>,
    /// Pass as `cursor` for older results; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// One record of the audit trail.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    /// Who made the change: `apikey:<id>` or the token's subject.
    pub actor: String,
    /// What was done, such as `integration.update` (the document enumerates them).
    pub action: String,
    #[oai(nullable)]
    pub integration_id: Option<Uuid>,
    pub timestamp: DateTime<Utc>,
    /// `{"before": .., "after": ..}`, secrets redacted.
    pub details: Value,
}

impl From<actors::AuditEntry> for AuditEntry {
    fn from(e: actors::AuditEntry) -> Self {
        Self {
            id: e.id,
            actor: e.actor,
            action: e.action,
            integration_id: e.integration_id,
            timestamp: e.timestamp,
            details: e.details,
        }
    }
}

/// A page of the audit trail, newest first.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The daemon's own state, for probes.
#[derive(Debug, Clone, Object)]
pub struct ProbeStatus {
    /// `ok`.
    pub status: String,
}

/// Opaque pagination cursors: clients pass back what they were given.
pub mod cursor {
    use super::*;

    pub fn encode(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn decode(cursor: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        String::from_utf8(bytes).ok()
    }

    pub fn encode_uuid(id: Uuid) -> String {
        encode(&format!("i:{id}"))
    }

    pub fn decode_uuid(cursor: &str) -> Option<Uuid> {
        decode(cursor)?.strip_prefix("i:")?.parse().ok()
    }

    pub fn encode_i64(id: i64) -> String {
        encode(&format!("a:{id}"))
    }

    pub fn decode_i64(cursor: &str) -> Option<i64> {
        decode(cursor)?.strip_prefix("a:")?.parse().ok()
    }

    /// A position in time (microseconds since the epoch): history pages are cut by time.
    pub fn encode_time(t: DateTime<Utc>) -> String {
        encode(&format!("t:{}", t.timestamp_micros()))
    }

    pub fn decode_time(cursor: &str) -> Option<DateTime<Utc>> {
        let micros = decode(cursor)?.strip_prefix("t:")?.parse().ok()?;
        DateTime::from_timestamp_micros(micros)
    }

    /// A `cursor` query parameter: absent or empty for the first page, 400 when forged.
    pub fn parse<T>(
        cursor: Option<&str>,
        decode: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, crate::api::error::ApiError> {
        match cursor {
            None | Some("") => Ok(None),
            Some(c) => decode(c).map(Some).ok_or_else(|| {
                crate::api::error::ApiError::bad_request("cursor: not a cursor of this list")
            }),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_rejects_foreign_cursors() {
            let id = Uuid::now_v7();
            assert_eq!(decode_uuid(&encode_uuid(id)), Some(id));
            assert_eq!(decode_i64(&encode_i64(42)), Some(42));
            assert_eq!(decode_uuid(&encode_i64(42)), None);
            assert_eq!(decode_uuid("%%%"), None);
            let t = DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap();
            assert_eq!(decode_time(&encode_time(t)), Some(t));
            assert_eq!(decode_time(&encode_i64(42)), None);
        }
    }
}
