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
    /// The credentials expire soon (or lost a permission the integration needs).
    CredentialExpiring,
    /// The provider's TLS certificate expires soon.
    CertificateExpiring,
    /// Little of the provider's request quota is left before its reset.
    QuotaLow,
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
            Reason::CertificateExpiring => "certificate_expiring",
            Reason::QuotaLow => "quota_low",
            Reason::Timeout => "timeout",
            Reason::Network => "network",
            Reason::Tls => "tls",
            Reason::ProviderDegraded => "provider_degraded",
            Reason::BadResponse => "bad_response",
            Reason::ConnectorFailed => "connector_failed",
        }
    }
}

/// A provider's request quota, as its last answer told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests left in the current window.
    pub remaining: u64,
    /// Requests the window allows, where the provider tells.
    pub limit: Option<u64>,
    /// When the window resets, where the provider tells.
    pub reset_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Quota {
    /// Whether less than `percent` % of the limit is left (never, without a limit).
    pub fn is_low(&self, percent: u8) -> bool {
        self.limit.is_some_and(|limit| {
            limit > 0 && u128::from(self.remaining) * 100 < u128::from(limit) * u128::from(percent)
        })
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
    /// When the provider endpoint's TLS certificate expires (its `notAfter`), read on the
    /// check's own connection.
    pub certificate_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The provider's request quota as the check's answer told it.
    pub quota: Option<Quota>,
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
            certificate_expires_at: None,
            quota: None,
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
            certificate_expires_at: None,
            quota: None,
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
            certificate_expires_at: None,
            quota: None,
            plugin_failures: None,
        }
    }

    /// The same report, telling when the credential expires.
    #[must_use]
    pub fn with_credential_expiry(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.credential_expires_at = Some(at);
        self
    }

    /// The same report, degraded with `reason` and `message` if it was healthy: a warning
    /// never hides a failure, nor an earlier warning.
    #[must_use]
    pub fn warn(mut self, reason: Reason, message: impl Into<String>) -> Self {
        if self.health == Health::Healthy {
            self.health = Health::Degraded;
            self.reason = Some(reason);
            self.message = Some(message.into());
        }
        self
    }

    /// The same report, telling the provider's quota.
    #[must_use]
    pub fn with_quota(mut self, quota: Option<Quota>) -> Self {
        self.quota = quota.or(self.quota);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_low_below_its_share() {
        let q = |remaining, limit| Quota {
            remaining,
            limit,
            reset_at: None,
        };
        assert!(q(99, Some(1000)).is_low(10));
        assert!(!q(100, Some(1000)).is_low(10));
        assert!(!q(0, None).is_low(10), "no limit, no share");
        assert!(!q(0, Some(0)).is_low(10));
        assert!(!q(5, Some(1000)).is_low(0), "0 % never warns");
        assert!(q(u64::MAX - 1, Some(u64::MAX)).is_low(100));
    }

    #[test]
    fn a_warning_never_hides_a_failure_or_an_earlier_warning() {
        let w = HealthReport::healthy().warn(Reason::QuotaLow, "low");
        assert_eq!(
            (w.health, w.reason),
            (Health::Degraded, Some(Reason::QuotaLow))
        );
        let first = w.warn(Reason::CertificateExpiring, "cert");
        assert_eq!(first.reason, Some(Reason::QuotaLow));
        let failed =
            HealthReport::unhealthy(Reason::AuthFailed, "401").warn(Reason::QuotaLow, "low");
        assert_eq!(
            (failed.health, failed.reason),
            (Health::Unhealthy, Some(Reason::AuthFailed))
        );
    }
}
