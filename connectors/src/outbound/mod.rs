//! Outbound discipline: every request to a provider goes through one [`Outbound`].
//!
//! - One shared reqwest client (rustls with ring), with timeouts, a User-Agent and no
//!   redirects (a provider API that redirects is answering something we did not ask).
//! - An SSRF guard: a target that is, or resolves to, an address no provider lives at is
//!   refused unless its network is listed in
//!   [`OutboundSettings::allow_private_networks`](crate::settings::OutboundSettings). It is
//!   checked before sending and again inside the client's resolver, so DNS rebinding between
//!   the two gains nothing.
//! - A per-host governor limit shared by every integration, and a per-host pause whenever a
//!   provider answers 429 or a rate-limit header at zero: until then, calls to that host fail
//!   fast as rate limited instead of being sent.
//!
//! # Layout
//! - `mod.rs`: [`Outbound`], built once from the settings ([`OutboundError`] when they do not
//!   hold), with the shared client ([`USER_AGENT`], [`ensure_crypto_provider`]) and
//!   [`Outbound::send`], which ties the modules below together: guard, limit, send, pause.
//! - `guard.rs`: the SSRF guard, [`SsrfGuard`]: the addresses no provider lives at (IPv4,
//!   IPv6, and the IPv6 forms that carry an IPv4 address, NAT64 among them), the check of an
//!   address literal before sending, and the guarded DNS resolver of the client.
//! - `limits.rs`: per-host limits: the governor rate and the pauses providers asked for.
//! - `quota.rs`: a provider's `Retry-After` and rate-limit headers read as one wait
//!   ([`rate_limit_signal`], [`retry_after`], capped at [`MAX_RETRY_AFTER`]).
//! - `response.rs`: a non-success status as a domain error ([`status_error`]) and a
//!   size-capped JSON body ([`read_json`]).
//! - `certificate.rs`: the provider endpoint's certificate as the check's own connection saw
//!   it ([`PeerCertificate`], left in each TLS response's extensions) and its judgement
//!   ([`judge_certificate`]: `certificate_expiring` at the horizon, `tls` outside validity).
//! - `token_cache.rs`: [`TokenCache`], the tokens providers mint (registry bearer tokens,
//!   cloud access tokens) kept until shortly before they expire, keyed by tenant,
//!   integration, credential and audience ([`TokenKey`]) so nothing is shared across them.
//! - `paging.rs`: the next page of a `Link` header ([`link_next`]) and the check that keeps a
//!   page cursor under the integration's API root ([`check_cursor_url`]).
//!
//! Each file's tests sit at its end; those of `mod.rs` are in `tests.rs`, with the helpers
//! every outbound test shares.

mod certificate;
mod guard;
mod limits;
mod paging;
mod quota;
mod response;
#[cfg(test)]
mod tests;
pub mod token_cache;

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Response;
use reqwest::header::HeaderMap;

pub use self::certificate::{PeerCertificate, judge_certificate};
use self::guard::GuardedResolver;
pub use self::guard::SsrfGuard;
use self::limits::{HostLimits, host_key};
pub use self::paging::{check_cursor_url, link_next};
pub use self::quota::{
    MAX_RETRY_AFTER, judge_quota, quota_from_headers, rate_limit_signal, retry_after,
};
pub use self::response::{read_json, status_error};
pub use self::token_cache::{TokenCache, TokenKey};
pub use crate::error::DEFAULT_RETRY_AFTER;
use crate::error::Error;
use crate::health::HealthReport;
use crate::settings::OutboundSettings;

/// The User-Agent of every provider request (GitHub refuses requests without one).
pub const USER_AGENT: &str = concat!("stellaops-integrations/", env!("CARGO_PKG_VERSION"));

/// Installs ring as the process's rustls provider if none is installed yet (reqwest is built
/// with `rustls-no-provider`, and panics without one).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: some provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Why [`Outbound::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("allow_private_networks: {0:?} is not a CIDR network such as 10.0.0.0/8")]
    BadNetwork(String),
    #[error("per_host_requests_per_second and per_host_burst must be at least 1")]
    ZeroRate,
    #[error("quota_warning_percent must be at most 100")]
    QuotaPercent,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The shared outbound HTTP path. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<OutboundInner>,
}

struct OutboundInner {
    settings: OutboundSettings,
    guard: SsrfGuard,
    client: OnceLock<Result<reqwest::Client, String>>,
    limits: HostLimits,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Default for Outbound {
    /// Default settings, with the client built on first use (so `Default` cannot panic).
    fn default() -> Self {
        Self::lazy(&OutboundSettings::default()).expect("default outbound settings are valid")
    }
}

impl Outbound {
    /// Builds the outbound path and its client.
    ///
    /// # Errors
    /// A network in `allow_private_networks` that is not CIDR, a zero rate, or a client that
    /// cannot be built.
    pub fn new(settings: &OutboundSettings) -> Result<Self, OutboundError> {
        let outbound = Self::lazy(settings)?;
        outbound.client().map_err(OutboundError::Client)?;
        Ok(outbound)
    }

    fn lazy(settings: &OutboundSettings) -> Result<Self, OutboundError> {
        let allowed = settings
            .allow_private_networks
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| OutboundError::BadNetwork(s.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rate = NonZeroU32::new(settings.per_host_requests_per_second)
            .ok_or(OutboundError::ZeroRate)?;
        let burst = NonZeroU32::new(settings.per_host_burst).ok_or(OutboundError::ZeroRate)?;
        if settings.quota_warning_percent > 100 {
            return Err(OutboundError::QuotaPercent);
        }
        Ok(Self {
            inner: Arc::new(OutboundInner {
                settings: settings.clone(),
                guard: SsrfGuard::new(allowed),
                client: OnceLock::new(),
                limits: HostLimits::new(rate, burst),
            }),
        })
    }

    /// The shared client.
    ///
    /// # Errors
    /// The reason the client could not be built.
    pub fn client(&self) -> Result<&reqwest::Client, String> {
        self.inner
            .client
            .get_or_init(|| {
                ensure_crypto_provider();
                let s = &self.inner.settings;
                let mut roots = Vec::new();
                for path in &s.ca_certificates {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("ca_certificates: {}: {e}", path.display()))?;
                    roots.extend(reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                        format!("ca_certificates: {}: not PEM certificates", path.display())
                    })?);
                }
                reqwest::Client::builder()
                    .tls_certs_merge(roots)
                    // The peer certificate of every response, for its expiry.
                    .tls_info(true)
                    .user_agent(USER_AGENT)
                    .timeout(Duration::from_millis(s.request_timeout_ms))
                    .connect_timeout(Duration::from_millis(s.connect_timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    // Straight to the provider, never through a proxy from the environment:
                    // the guard must see the address every connection goes to.
                    .no_proxy()
                    .dns_resolver(GuardedResolver {
                        guard: self.inner.guard.clone(),
                    })
                    .build()
                    .map_err(|e| e.without_url().to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The SSRF guard in force.
    pub fn guard(&self) -> &SsrfGuard {
        &self.inner.guard
    }

    /// The percentage of a quota below which checks warn (`quota_low`).
    pub fn quota_warning_percent(&self) -> u8 {
        self.inner.settings.quota_warning_percent
    }

    /// How long before a provider certificate's expiry checks warn (`certificate_expiring`);
    /// zero for never.
    pub fn certificate_warning(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.inner.settings.certificate_warning_days))
    }

    /// `report` with the quota `headers` tell, warned `quota_low` when less than
    /// [`Outbound::quota_warning_percent`] of it is left.
    pub fn judge_quota(&self, report: HealthReport, headers: &HeaderMap) -> HealthReport {
        judge_quota(
            report,
            quota_from_headers(headers),
            self.quota_warning_percent(),
        )
    }

    /// `report` with the certificate `response` came with, judged against
    /// [`Outbound::certificate_warning`] (see [`judge_certificate`]).
    pub fn judge_certificate(&self, report: HealthReport, response: &Response) -> HealthReport {
        judge_certificate(
            report,
            PeerCertificate::of(response),
            self.certificate_warning(),
            chrono::Utc::now(),
        )
    }

    /// Largest response body read.
    pub fn max_response_bytes(&self) -> u64 {
        self.inner.settings.max_response_bytes
    }

    /// A request builder on the shared client.
    ///
    /// # Errors
    /// [`Error::Network`] when the client cannot be built.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let client = self.client().map_err(Error::Network)?;
        Ok(client.request(method, url))
    }

    /// Checks the target, waits for the host's rate limit, sends (with the current trace's
    /// `traceparent`), and turns a rate-limit answer into [`Error::RateLimited`] (pausing the host). Other statuses are returned for
    /// the connector to judge.
    ///
    /// # Errors
    /// [`Error::TargetRefused`], [`Error::RateLimited`], [`Error::Timeout`], [`Error::Tls`],
    /// [`Error::Network`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, Error> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(Error::from)?;
        crate::trace::inject(request.headers_mut());
        let url = request.url().clone();
        let key = host_key(&url);
        self.inner.guard.check_target(&url)?;
        let max_wait = Duration::from_millis(self.inner.settings.max_rate_wait_ms);
        self.inner.limits.admit(&key, max_wait).await?;
        let mut response = client.execute(request).await.map_err(Error::from)?;
        let certificate = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(PeerCertificate::from_der);
        if let Some(certificate) = certificate {
            response.extensions_mut().insert(certificate);
        }
        if let Some(wait) = rate_limit_signal(response.status(), response.headers()) {
            tracing::info!(
                message = "Provider asked to slow down; pausing calls to it.",
                host = %key,
                wait_secs = wait.as_secs(),
            );
            self.inner.limits.pause(&key, wait);
            return Err(Error::RateLimited {
                retry_after: Some(wait),
            });
        }
        Ok(response)
    }
}
