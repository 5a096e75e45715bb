//! What a health check reports.

use std::time::Duration;

/// The health of a provider as one check saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Healthy,
    /// Working, with a problem worth attention (credentials about to expire, quota low,
    /// some provider components down).
    Degraded,
    Unhealthy,
}

impl Health {
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Machine-readable reason of a degraded or unhealthy result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The provider refused the credentials (401).
    AuthFailed,
    /// The credentials lack a permission (403).
    Forbidden,
    /// The provider asked to slow down (429, or a rate-limit header at zero).
    RateLimited,
    /// The secret behind the AuthRef could not be read (vault down, sealed, 403, 404).
    CredentialUnavailable,
    /// The credentials expire soon.
    CredentialExpiring,
    /// No answer within the check's timeout.
    Timeout,
    /// Connection refused, reset, DNS failure, or a refused target.
    Network,
    /// TLS handshake or certificate failure.
    Tls,
    /// The provider reports a problem of its own (5xx, unhealthy components).
    ProviderDegraded,
    /// An answer that does not match the provider's API.
    BadResponse,
    /// The connector itself failed (a panic, a plugin crash).
    ConnectorFailed,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::AuthFailed => "auth_failed",
            Reason::Forbidden => "forbidden",
            Reason::RateLimited => "rate_limited",
            Reason::CredentialUnavailable => "credential_unavailable",
            Reason::CredentialExpiring => "credential_expiring",
            Reason::Timeout => "timeout",
            Reason::Network => "network",
            Reason::Tls => "tls",
            Reason::ProviderDegraded => "provider_degraded",
            Reason::BadResponse => "bad_response",
            Reason::ConnectorFailed => "connector_failed",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    pub health: Health,
    /// Set whenever `health` is not `Healthy`.
    pub reason: Option<Reason>,
    /// A safe, human-readable explanation (never a secret).
    pub message: Option<String>,
    /// The provider asked not to be called again before this long: the monitor pauses instead
    /// of counting a failure.
    pub retry_after: Option<Duration>,
    /// When the credential the check used expires, where the provider tells.
    pub credential_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// For a check an external plugin could not answer: how many times in a row its process
    /// has failed (crash, hang, protocol violation, failed start).
    pub plugin_failures: Option<u32>,
}

impl HealthReport {
    pub fn healthy() -> Self {
        Self {
            health: Health::Healthy,
            reason: None,
            message: None,
            retry_after: None,
            credential_expires_at: None,
            plugin_failures: None,
        }
    }

    pub fn degraded(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            health: Health::Degraded,
            reason: Some(reason),
            message: Some(message.into()),
            retry_after: None,
            credential_expires_at: None,
            plugin_failures: None,
        }
    }

    pub fn unhealthy(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            health: Health::Unhealthy,
            reason: Some(reason),
            message: Some(message.into()),
            retry_after: None,
            credential_expires_at: None,
            plugin_failures: None,
        }
    }

    /// The same report, telling when the credential expires.
    #[must_use]
    pub fn with_credential_expiry(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.credential_expires_at = Some(at);
        self
    }

    /// A rate-limited answer: not a failure, a request to pause.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::unhealthy(Reason::RateLimited, "the provider asked to retry later")
        }
    }
}
