//! [`Error`]: why a connector could not be built or could not do what was asked, and the health
//! reason each error stands for.

use std::time::Duration;

use crate::health::{HealthReport, Reason};
use crate::secrets::SecretError;

/// Pause used when a provider says "rate limited" without saying for how long.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A host name that resolved only to addresses the SSRF guard refuses; found in a failed
/// request's error chain and reported as [`Error::TargetRefused`].
#[derive(Debug, thiserror::Error)]
#[error("{host}: no permitted address")]
pub(crate) struct Refused {
    pub(crate) host: String,
}

/// Why a connector could not be built or could not do what was asked. Every message is safe
/// to show: it never holds a secret, a token or a response body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration does not parse for this provider.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The provider does not offer this capability (or not yet in this build).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The integration has no AuthRef but the provider needs credentials.
    #[error("no credentials: {0}")]
    NoCredentials(&'static str),
    /// The secret behind the AuthRef could not be resolved.
    #[error("credentials unavailable: {0}")]
    Credential(#[from] SecretError),
    /// The credentials could not be used (a private key that does not parse, and so on).
    #[error("credentials unusable: {0}")]
    BadCredential(String),
    /// The provider refused the credentials (401).
    #[error("the provider refused the credentials")]
    Unauthorized,
    /// The provider suspended what the credentials act as (a GitHub App installation).
    #[error("{0}")]
    Suspended(String),
    /// The credentials lack a permission (403).
    #[error("the credentials lack a permission")]
    Forbidden,
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The provider asked to slow down.
    #[error("the provider asked to retry later")]
    RateLimited { retry_after: Option<Duration> },
    /// No answer in time.
    #[error("the provider did not answer in time")]
    Timeout,
    /// Connection refused, reset, DNS failure.
    #[error("network: {0}")]
    Network(String),
    /// TLS handshake or certificate failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The SSRF guard refused the target (an internal address not allowed in settings).
    #[error("{0}: refused, it is or resolves to an internal address not allowed in settings")]
    TargetRefused(String),
    /// The provider failed on its side (5xx).
    #[error("the provider answered HTTP {status}")]
    Provider { status: u16 },
    /// An answer that does not match the provider's API.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
    /// A pagination cursor this connector did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
}

impl Error {
    /// The health reason this error stands for.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Config(_) | Error::Unsupported(_) => Reason::ConnectorFailed,
            Error::NoCredentials(_) | Error::Credential(_) | Error::BadCredential(_) => {
                Reason::CredentialUnavailable
            }
            Error::Unauthorized | Error::Suspended(_) => Reason::AuthFailed,
            Error::Forbidden => Reason::Forbidden,
            Error::RateLimited { .. } => Reason::RateLimited,
            Error::Timeout => Reason::Timeout,
            Error::Network(_) | Error::TargetRefused(_) => Reason::Network,
            Error::Tls(_) => Reason::Tls,
            Error::Provider { .. } => Reason::ProviderDegraded,
            Error::NotFound(_) | Error::BadResponse(_) | Error::InvalidCursor => {
                Reason::BadResponse
            }
        }
    }

    /// How long the provider (or the secret store) asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
            Error::Credential(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The unhealthy report of a check that failed with this error.
    pub fn to_report(&self) -> HealthReport {
        HealthReport {
            retry_after: self.retry_after(),
            ..HealthReport::unhealthy(self.reason(), self.to_string())
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // Drop the URL: it is safe today, but query strings are not ours to print.
        let e = e.without_url();
        if e.is_timeout() {
            return Error::Timeout;
        }
        if e.is_decode() {
            return Error::BadResponse("undecodable body".into());
        }
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                return Error::TargetRefused(refused.host.clone());
            }
            if s.downcast_ref::<rustls::Error>().is_some() {
                return Error::Tls(s.to_string());
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return Error::Timeout;
                }
                if let Some(tls) = tls_inside(io) {
                    return Error::Tls(tls.to_string());
                }
            }
            chain = s.to_string();
            source = s.source();
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            Error::Tls(chain)
        } else {
            Error::Network(chain)
        }
    }
}

/// The rustls error inside (possibly nested) `io::Error`s, whose `source()` skips the error
/// they wrap.
fn tls_inside(io: &std::io::Error) -> Option<&rustls::Error> {
    let inner = io.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    inner.downcast_ref::<std::io::Error>().and_then(tls_inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    #[test]
    fn every_error_is_an_unhealthy_report_with_its_reason() {
        let sealed = SecretError::Sealed {
            reference: "authref://vault/secret/x#y".into(),
        };
        let vault_limited = SecretError::RateLimited {
            reference: "authref://vault/secret/x#y".into(),
            retry_after: Some(Duration::from_secs(4)),
        };
        for (error, reason, retry_after) in [
            (Error::Unauthorized, Reason::AuthFailed, None),
            (Error::Forbidden, Reason::Forbidden, None),
            (
                Error::RateLimited { retry_after: None },
                Reason::RateLimited,
                Some(crate::error::DEFAULT_RETRY_AFTER),
            ),
            (Error::Timeout, Reason::Timeout, None),
            (Error::Network("refused".into()), Reason::Network, None),
            (
                Error::TargetRefused("10.0.0.1".into()),
                Reason::Network,
                None,
            ),
            (Error::Tls("bad certificate".into()), Reason::Tls, None),
            (
                Error::Provider { status: 502 },
                Reason::ProviderDegraded,
                None,
            ),
            (Error::BadResponse("x".into()), Reason::BadResponse, None),
            (Error::NotFound("x".into()), Reason::BadResponse, None),
            (
                Error::Credential(sealed),
                Reason::CredentialUnavailable,
                None,
            ),
            (
                Error::Credential(vault_limited),
                Reason::CredentialUnavailable,
                Some(Duration::from_secs(4)),
            ),
            (
                Error::NoCredentials("x"),
                Reason::CredentialUnavailable,
                None,
            ),
        ] {
            let report = error.to_report();
            assert_eq!(report.health, Health::Unhealthy, "{error:?}");
            assert_eq!(report.reason, Some(reason), "{error:?}");
            assert_eq!(report.retry_after, retry_after, "{error:?}");
            assert_eq!(report.message.as_deref(), Some(error.to_string().as_str()));
        }
    }
}
