//! The wire protocol between the daemon and a plugin process: JSON-RPC 2.0, one JSON message
//! per line, on the child's stdin (requests) and stdout (responses). `docs/plugins.md` is the
//! author-facing description; this module is its single implementation on the daemon side.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::health::{Health, HealthReport, Quota, Reason};

/// The protocol version this daemon speaks by preference.
pub const PROTOCOL_VERSION: u32 = 1;
/// Every protocol version this daemon can speak.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[u32] = &[1];

/// Method names.
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const VALIDATE_CONFIG: &str = "validate_config";
    pub const TEST_CONNECTION: &str = "test_connection";
    pub const CHECK_HEALTH: &str = "check_health";
    pub const LIST_RESOURCES: &str = "list_resources";
}

/// Longest plugin-supplied message kept in a report; the rest is cut.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// A resolved credential on its way to a plugin. It is written into one request on the child's
/// stdin and nowhere else: never argv, environment, logs or reports.
#[derive(Clone)]
pub struct Credential(SecretString);

impl Credential {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(SecretString::from(secret.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<SecretString> for Credential {
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// The `initialize` parameters.
pub fn initialize_params(plugin_id: &str) -> Value {
    json!({
        "protocolVersions": SUPPORTED_PROTOCOL_VERSIONS,
        "pluginId": plugin_id,
        "daemonVersion": env!("CARGO_PKG_VERSION"),
    })
}

/// The `initialize` result.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// The version the plugin chose among `protocolVersions`.
    pub protocol_version: u32,
    /// Capabilities, by wire name (informative; the manifest is authoritative).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Parameters of the calls about one integration. The credential is serialised in place:
/// the buffer holding the request is wiped after it is written.
pub fn integration_params(
    integration_id: &str,
    config: &Map<String, Value>,
    credential: Option<&Credential>,
) -> Value {
    json!({
        "integrationId": integration_id,
        "config": config,
        "credential": credential.map(|c| json!({"secret": c.expose()})),
    })
}

/// The `check_health` / `test_connection` result.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthResult {
    pub health: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// When the credential the check used expires (RFC 3339), where the plugin can tell.
    #[serde(default)]
    pub credential_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the provider endpoint's TLS certificate expires (RFC 3339).
    #[serde(default)]
    pub certificate_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests left in the provider's quota window.
    #[serde(default)]
    pub quota_remaining: Option<u64>,
    /// Requests the provider's quota window allows.
    #[serde(default)]
    pub quota_limit: Option<u64>,
    /// When the provider's quota window resets (RFC 3339).
    #[serde(default)]
    pub quota_reset_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One entry of a `validate_config` error list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The `validate_config` result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateResult {
    pub valid: bool,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

/// One resource behind an integration (a job, a repository).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Stable id within the provider.
    pub id: String,
    pub name: String,
    /// The kind of resource (`job`, `repository`, ...).
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// The `list_resources` result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListResourcesResult {
    pub resources: Vec<Resource>,
}

/// Longest `retryAfterSeconds` honoured: one day.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

const REASONS: [Reason; 13] = [
    Reason::AuthFailed,
    Reason::Forbidden,
    Reason::RateLimited,
    Reason::CredentialUnavailable,
    Reason::CredentialExpiring,
    Reason::CertificateExpiring,
    Reason::QuotaLow,
    Reason::Timeout,
    Reason::Network,
    Reason::Tls,
    Reason::ProviderDegraded,
    Reason::BadResponse,
    Reason::ConnectorFailed,
];

/// Parses a reason's wire name.
pub fn parse_reason(name: &str) -> Option<Reason> {
    REASONS.into_iter().find(|r| r.as_str() == name)
}

/// Parses a health's wire name.
pub fn parse_health(name: &str) -> Option<Health> {
    [Health::Healthy, Health::Degraded, Health::Unhealthy]
        .into_iter()
        .find(|h| h.as_str() == name)
}

/// Cuts a plugin-supplied text to [`MAX_MESSAGE_CHARS`], drops control characters, and
/// replaces any occurrence of the credential (a plugin echoing it back) with `[REDACTED]`.
pub fn sanitize(text: &str, credential: Option<&Credential>) -> String {
    let mut text = text.to_owned();
    if let Some(c) = credential
        && !c.expose().is_empty()
    {
        text = text.replace(c.expose(), "[REDACTED]");
    }
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Maps a health result to a report.
///
/// # Errors
/// Why the result breaks the contract (unknown health or reason, no reason when not healthy).
pub fn health_report(
    value: Value,
    credential: Option<&Credential>,
) -> Result<HealthReport, String> {
    let result: HealthResult =
        serde_json::from_value(value).map_err(|e| format!("malformed health result: {e}"))?;
    let health = parse_health(&result.health)
        .ok_or_else(|| format!("unknown health {:?}", sanitize(&result.health, credential)))?;
    let reason = match result.reason.as_deref() {
        None => None,
        Some(r) => Some(
            parse_reason(r)
                .ok_or_else(|| format!("unknown reason {:?}", sanitize(r, credential)))?,
        ),
    };
    if health != Health::Healthy && reason.is_none() {
        return Err(format!("health {} without a reason", health.as_str()));
    }
    Ok(HealthReport {
        health,
        reason: if health == Health::Healthy {
            None
        } else {
            reason
        },
        message: result.message.map(|m| sanitize(&m, credential)),
        retry_after: result
            .retry_after_seconds
            .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_SECS))),
        credential_expires_at: result.credential_expires_at,
        certificate_expires_at: result.certificate_expires_at,
        // A limit or a reset without the remaining count says nothing to warn on.
        quota: result.quota_remaining.map(|remaining| Quota {
            remaining,
            limit: result.quota_limit,
            reset_at: result.quota_reset_at,
        }),
        plugin_failures: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_is_redacted() {
        let c = Credential::new("hunter2");
        assert_eq!(format!("{c:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(c)), "Some([REDACTED])");
    }

    #[test]
    fn health_results_map_to_reports() {
        let c = Credential::new("s3cret");
        let r = health_report(
            json!({"health": "unhealthy", "reason": "auth_failed", "message": "token s3cret refused"}),
            Some(&c),
        )
        .unwrap();
        assert_eq!(r.reason, Some(Reason::AuthFailed));
        assert_eq!(r.message.as_deref(), Some("token [REDACTED] refused"));
        let r = health_report(
            json!({"health": "unhealthy", "reason": "rate_limited", "retryAfterSeconds": 999999}),
            None,
        )
        .unwrap();
        assert_eq!(
            r.retry_after,
            Some(Duration::from_secs(MAX_RETRY_AFTER_SECS))
        );
        assert_eq!(
            health_report(json!({"health": "healthy"}), None).unwrap(),
            HealthReport::healthy()
        );
        let r = health_report(
            json!({"health": "degraded", "reason": "quota_low", "message": "12 of 5000 left",
                   "credentialExpiresAt": "2030-01-02T03:04:05Z",
                   "certificateExpiresAt": "2030-02-01T00:00:00Z",
                   "quotaRemaining": 12, "quotaLimit": 5000,
                   "quotaResetAt": "2030-01-01T01:00:00Z"}),
            None,
        )
        .unwrap();
        assert_eq!(r.reason, Some(Reason::QuotaLow));
        assert_eq!(
            r.certificate_expires_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2030-02-01T00:00:00+00:00")
        );
        let q = r.quota.unwrap();
        assert_eq!((q.remaining, q.limit), (12, Some(5000)));
        assert_eq!(
            q.reset_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2030-01-01T01:00:00+00:00")
        );
        for bad in [
            json!({"health": "fine"}),
            json!({"health": "degraded"}),
            json!({"health": "unhealthy", "reason": "meh"}),
            json!({"health": "healthy", "extra": 1}),
            json!("healthy"),
        ] {
            assert!(health_report(bad.clone(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_reason_round_trips() {
        for r in REASONS {
            assert_eq!(parse_reason(r.as_str()), Some(r));
        }
        let long = "x".repeat(MAX_MESSAGE_CHARS + 10);
        assert_eq!(sanitize(&long, None).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(sanitize("a\nb\u{1b}[31m", None), "ab[31m");
    }
}
