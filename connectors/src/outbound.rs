//! Outbound discipline: every request to a provider goes through one [`Outbound`].
//!
//! - One shared reqwest client (rustls with ring), with timeouts, a User-Agent and no
//!   redirects (a provider API that redirects is answering something we did not ask).
//! - An SSRF guard: a target that is, or resolves to, an address no provider lives at is
//!   refused unless its network is listed in
//!   [`OutboundSettings::allow_private_networks`](crate::settings::OutboundSettings). It is
//!   checked before sending and again inside the client's resolver, so DNS rebinding between
//!   the two gains nothing. Refused are:
//!   - IPv4: "this network" 0.0.0.0/8, private 10/8, 172.16/12 and 192.168/16, shared
//!     100.64.0.0/10, loopback 127/8, link-local 169.254/16 (cloud metadata), IETF protocol
//!     assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, documentation 192.0.2.0/24,
//!     198.51.100.0/24 and 203.0.113.0/24, multicast 224/4, and reserved 240/4 (with the
//!     broadcast address).
//!   - IPv6: unspecified, loopback, multicast, unique local fc00::/7, link-local fe80::/10,
//!     site-local fec0::/10, documentation 2001:db8::/32, and the tunnel and translation
//!     prefixes that lead to addresses the guard cannot see: 6to4 2002::/16, Teredo
//!     2001::/32 and local-use NAT64 64:ff9b:1::/48, each as a whole.
//!   - IPv6 forms that carry an IPv4 address, judged as that address: IPv4-mapped
//!     (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and well-known NAT64
//!     (`64:ff9b::a.b.c.d`, kept open for public addresses so IPv6-only deployments behind
//!     DNS64 still reach providers).
//!
//!   A listed network lets through what it contains, written either way: `127.0.0.0/8` also
//!   allows `::ffff:127.0.0.1`, and an IPv6 network allows its own addresses.
//! - A per-host governor limit shared by every integration, and a per-host pause whenever a
//!   provider answers 429 or a rate-limit header at zero: until then, calls to that host fail
//!   fast as rate limited instead of being sent.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use tokio::time::Instant;

use crate::error::{Error, Refused};
use crate::settings::OutboundSettings;

/// The User-Agent of every provider request (GitHub refuses requests without one).
pub const USER_AGENT: &str = concat!("stellaops-integrations/", env!("CARGO_PKG_VERSION"));

/// Longest pause honoured from a provider's `Retry-After` or reset header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub use crate::error::DEFAULT_RETRY_AFTER;

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
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

// === SSRF guard ===

/// Decides which addresses providers may be reached at.
#[derive(Clone, Debug, Default)]
pub struct SsrfGuard {
    allowed: Vec<IpNet>,
}

impl SsrfGuard {
    /// A guard allowing these networks on top of public addresses.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether a request may go to `ip`: a public address, or one inside an allowed network
    /// (an IPv6 form that carries an IPv4 address is also allowed by a network holding that
    /// IPv4 address).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_internal(ip) {
            return true;
        }
        let carried = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || carried.is_some_and(|v4| net.contains(&v4)))
    }
}

/// IPv4 networks no provider is reached at, as (network, prefix length).
const INTERNAL_V4: [(Ipv4Addr, u8); 14] = [
    // "this network" (RFC 791), where 0.0.0.0 connects to the local host
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // private (RFC 1918)
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // shared address space, carrier-grade NAT (RFC 6598)
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // loopback
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // link-local, where cloud metadata services answer (169.254.169.254)
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // private (RFC 1918)
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890), such as NAT64 discovery's 192.0.0.170
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // documentation, TEST-NET-1 (RFC 5737)
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    // private (RFC 1918)
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // benchmarking (RFC 2544), used inside some private networks
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // documentation, TEST-NET-2
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    // documentation, TEST-NET-3
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // multicast
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // reserved (RFC 1112), with the limited broadcast address 255.255.255.255
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks no provider is reached at, as (network, prefix length). The prefixes that
/// embed an IPv4 address the guard can judge are handled by [`embedded_v4`] instead.
const INTERNAL_V6: [(Ipv6Addr, u8); 10] = [
    // unspecified
    (Ipv6Addr::UNSPECIFIED, 128),
    // loopback
    (Ipv6Addr::LOCALHOST, 128),
    // local-use NAT64 (RFC 8215): translated into networks the guard cannot see
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // Teredo (RFC 4380): tunnelled to an IPv4 address hidden in the client part
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    // documentation (RFC 3849)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // 6to4 (RFC 3056): relayed to the embedded IPv4 address's network
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    // unique local (includes AWS's fd00:ec2::254 metadata address)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    // link-local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // site-local (deprecated by RFC 3879, still routed inside some sites)
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    // multicast
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    INTERNAL_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX << (32 - u32::from(len));
        ip & mask == u32::from(net)
    })
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let listed = INTERNAL_V6.iter().any(|&(net, len)| {
        let mask = u128::MAX << (128 - u32::from(len));
        bits & mask == u128::from(net)
    });
    listed || embedded_v4(ip).is_some_and(is_internal_v4)
}

/// The IPv4 address an IPv6 address stands for, in the forms that carry one in their last 32
/// bits: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (but `::` and `::1`, which are
/// IPv6's own unspecified and loopback addresses) and well-known NAT64 `64:ff9b::/96`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let carried = Ipv4Addr::from(u128::from(ip) as u32);
    match s[..6] {
        [0, 0, 0, 0, 0, 0xffff] => Some(carried),
        [0, 0, 0, 0, 0, 0] if u32::from(carried) > 1 => Some(carried),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(carried),
        _ => None,
    }
}

/// reqwest's resolver, filtered by the guard: the last word on where a connection goes. A
/// host name is checked here, when a connection is opened, and only here: a pooled connection
/// needs no lookup at all.
struct GuardedResolver {
    guard: SsrfGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// === impl Outbound ===

/// The shared outbound HTTP path. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<OutboundInner>,
}

struct OutboundInner {
    settings: OutboundSettings,
    guard: SsrfGuard,
    client: OnceLock<Result<reqwest::Client, String>>,
    limiter: DefaultKeyedRateLimiter<String>,
    /// Host → the instant before which the provider asked not to be called.
    paused: Mutex<HashMap<String, Instant>>,
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
        Ok(Self {
            inner: Arc::new(OutboundInner {
                settings: settings.clone(),
                guard: SsrfGuard::new(allowed),
                client: OnceLock::new(),
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                paused: Mutex::new(HashMap::new()),
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
                reqwest::Client::builder()
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

    /// Checks the target, waits for the host's rate limit, sends, and turns a rate-limit
    /// answer into [`Error::RateLimited`] (pausing the host). Other statuses are returned for
    /// the connector to judge.
    ///
    /// # Errors
    /// [`Error::TargetRefused`], [`Error::RateLimited`], [`Error::Timeout`], [`Error::Tls`],
    /// [`Error::Network`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, Error> {
        let (client, request) = request.build_split();
        let request = request.map_err(Error::from)?;
        let url = request.url().clone();
        let host = url.host_str().unwrap_or_default().to_owned();
        let key = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        self.check_target(&url)?;
        if let Some(left) = self.paused_for(&key) {
            return Err(Error::RateLimited {
                retry_after: Some(left),
            });
        }
        let max_wait = Duration::from_millis(self.inner.settings.max_rate_wait_ms);
        if tokio::time::timeout(max_wait, self.inner.limiter.until_key_ready(&key))
            .await
            .is_err()
        {
            return Err(Error::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        let response = client.execute(request).await.map_err(Error::from)?;
        if let Some(wait) = rate_limit_signal(response.status(), response.headers()) {
            tracing::info!(
                message = "Provider asked to slow down; pausing calls to it.",
                host = %key,
                wait_secs = wait.as_secs(),
            );
            self.pause(&key, wait);
            return Err(Error::RateLimited {
                retry_after: Some(wait),
            });
        }
        Ok(response)
    }

    fn paused_for(&self, key: &str) -> Option<Duration> {
        let mut paused = self.inner.paused.lock().unwrap_or_else(|e| e.into_inner());
        match paused.get(key) {
            Some(until) if *until > Instant::now() => Some(*until - Instant::now()),
            Some(_) => {
                paused.remove(key);
                None
            }
            None => None,
        }
    }

    fn pause(&self, key: &str, wait: Duration) {
        let mut paused = self.inner.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.insert(key.to_owned(), Instant::now() + wait);
    }

    /// Refuses a URL whose host is a guarded address literal. Host names are left to
    /// [`GuardedResolver`], when a connection is opened.
    fn check_target(&self, url: &url::Url) -> Result<(), Error> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Error::BadResponse("a URL without a host".into())),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Error> {
        if self.inner.guard.permits(ip) {
            Ok(())
        } else {
            Err(Error::TargetRefused(ip.to_string()))
        }
    }
}

// === response helpers ===

/// How long the provider asks us to wait, when a response says "rate limited": a 429, or a
/// 403 with `X-RateLimit-Remaining: 0` (GitHub's primary limit) or with `Retry-After`
/// (GitHub's secondary limit).
pub fn rate_limit_signal(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let exhausted = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (exhausted || headers.contains_key(reqwest::header::RETRY_AFTER)));
    limited.then(|| retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The wait a response asks for: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset` (epoch seconds) when the remaining quota is zero. Capped at
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let from_retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            v.parse::<u64>().map(Duration::from_secs).ok().or_else(|| {
                httpdate::parse_http_date(v).ok().map(|at| {
                    at.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
                })
            })
        });
    let from_reset = || {
        if header_u64(headers, "x-ratelimit-remaining") != Some(0) {
            return None;
        }
        let reset = header_u64(headers, "x-ratelimit-reset")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now)))
    };
    from_retry_after
        .or_else(from_reset)
        .map(|d| d.clamp(Duration::from_secs(1), MAX_RETRY_AFTER))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as GitHub, GitLab and the OCI
/// distribution API send it.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return target
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .map(str::to_owned);
            }
        }
    }
    None
}

/// A pagination cursor that is a provider URL (taken from a `Link` header), accepted only
/// under the integration's own API root, so a caller cannot aim the connector elsewhere.
///
/// # Errors
/// [`Error::InvalidCursor`].
pub fn check_cursor_url(base: &str, cursor: &str) -> Result<String, Error> {
    let prefix = format!("{}/", base.trim_end_matches('/'));
    if cursor.starts_with(&prefix) && !cursor.contains(|c: char| c.is_whitespace() || c == '#') {
        Ok(cursor.to_owned())
    } else {
        Err(Error::InvalidCursor)
    }
}

/// The error of a non-success status, in domain terms.
pub fn status_error(status: StatusCode, what: &str) -> Error {
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized,
        StatusCode::FORBIDDEN => Error::Forbidden,
        StatusCode::NOT_FOUND => Error::NotFound(what.to_owned()),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Error::Timeout,
        s if s.is_server_error() => Error::Provider { status: s.as_u16() },
        s => Error::BadResponse(format!("{what}: unexpected HTTP {}", s.as_u16())),
    }
}

/// Reads a JSON body, refusing bodies larger than `max` bytes.
///
/// # Errors
/// [`Error::BadResponse`] for an oversized or malformed body; a transport error while reading.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    mut response: Response,
    max: u64,
    what: &str,
) -> Result<T, Error> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(Error::BadResponse(format!("{what}: response too large")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Error::from)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(Error::BadResponse(format!("{what}: response too large")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::BadResponse(format!("{what}: not the expected JSON ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn guard_refuses_internal_targets_unless_allowed() {
        let strict = SsrfGuard::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
        ] {
            assert!(!strict.permits(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.6", "2606:50c0:8000::154", "64:ff9b::8c52:7006"] {
            assert!(strict.permits(ip.parse().unwrap()), "{ip}");
        }
        let loopback = SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.permits("169.254.169.254".parse().unwrap()));
    }

    /// Each added range: addresses inside it refused, a public neighbour permitted.
    #[test]
    fn guard_refuses_reserved_documentation_and_tunnel_ranges() {
        let strict = SsrfGuard::default();
        for (denied, permitted) in [
            // "this network" 0.0.0.0/8
            (
                &["0.0.0.0", "0.1.2.3", "0.255.255.255"][..],
                &["1.0.0.1"][..],
            ),
            // IETF protocol assignments 192.0.0.0/24
            (&["192.0.0.1", "192.0.0.170", "192.0.0.255"], &["192.0.1.1"]),
            // benchmarking 198.18.0.0/15
            (
                &["198.18.0.1", "198.19.255.255"],
                &["198.17.255.255", "198.20.0.1"],
            ),
            // documentation
            (&["192.0.2.1", "192.0.2.255"], &["192.0.3.1"]),
            (&["198.51.100.7"], &["198.51.101.7", "198.51.99.7"]),
            (&["203.0.113.9"], &["203.0.112.9", "203.0.114.9"]),
            // reserved 240.0.0.0/4, with broadcast
            (
                &["240.0.0.1", "250.1.2.3", "255.255.255.255"],
                &["223.255.255.254"],
            ),
            // IPv6 documentation 2001:db8::/32
            (&["2001:db8::1", "2001:db8:ffff::1"], &["2001:db9::1"]),
            // 6to4 2002::/16, whatever the IPv4 address it embeds
            (
                &["2002::1", "2002:c000:0201::1", "2002:8c52:7006::1"],
                &["2003::1", "2001:4860:4860::8888"],
            ),
            // Teredo 2001::/32
            (
                &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"],
                &["2001:200::1"],
            ),
            // local-use NAT64 64:ff9b:1::/48
            (
                &["64:ff9b:1::a00:1", "64:ff9b:1:ffff::8c52:7006"],
                &["64:ff9b:2::1"],
            ),
            // well-known NAT64 64:ff9b::/96 of a denied IPv4 address
            (
                &["64:ff9b::7f00:1", "64:ff9b::c612:1", "64:ff9b::f000:1"],
                &["64:ff9b::8c52:7006"],
            ),
            // site-local fec0::/10
            (&["fec0::1"], &["2606:50c0:8000::154"]),
        ] {
            for ip in denied {
                assert!(!strict.permits(ip.parse().unwrap()), "{ip} permitted");
            }
            for ip in permitted {
                assert!(strict.permits(ip.parse().unwrap()), "{ip} refused");
            }
        }
    }

    /// An IPv4 address cannot be smuggled in as an IPv4-mapped or IPv4-compatible IPv6
    /// address.
    #[test]
    fn mapped_and_compatible_forms_are_judged_as_their_ipv4_address() {
        let strict = SsrfGuard::default();
        for v4 in [
            "127.0.0.1",
            "10.0.0.1",
            "10.255.1.2",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            for form in [format!("::ffff:{v4}"), format!("::{v4}")] {
                let ip: IpAddr = form.parse().unwrap();
                assert!(!strict.permits(ip), "{form} permitted");
            }
        }
        for v4 in ["140.82.112.6", "8.8.8.8", "11.0.0.1", "169.255.0.1"] {
            for form in [format!("::ffff:{v4}"), format!("::{v4}")] {
                let ip: IpAddr = form.parse().unwrap();
                assert!(strict.permits(ip), "{form} refused");
            }
        }
        // IPv6's own unspecified and loopback addresses are not IPv4-compatible forms.
        assert!(!strict.permits("::".parse().unwrap()));
        assert!(!strict.permits("::1".parse().unwrap()));
    }

    /// An allowed network lets through what it lists, in every form, and nothing else.
    #[test]
    fn allowed_networks_open_exactly_what_they_list() {
        let guard = SsrfGuard::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "198.18.0.0/15".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
            "2002::/16".parse().unwrap(),
        ]);
        for ip in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "::10.1.2.3",
            "64:ff9b::a01:203",
            "198.19.0.1",
            "::ffff:198.18.0.1",
            "2001:db8::1",
            "2002:c000:0201::1",
        ] {
            assert!(guard.permits(ip.parse().unwrap()), "{ip} refused");
        }
        for ip in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "::169.254.169.254",
            "192.0.2.1",
            "2001::1",
            "64:ff9b:1::a01:203",
        ] {
            assert!(!guard.permits(ip.parse().unwrap()), "{ip} permitted");
        }
        // A mapped network written in IPv6 allows its mapped addresses.
        let mapped = SsrfGuard::new(vec!["::ffff:127.0.0.0/104".parse().unwrap()]);
        assert!(mapped.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!mapped.permits("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = OutboundSettings {
            allow_private_networks: vec!["ten".into()],
            ..OutboundSettings::default()
        };
        assert!(matches!(
            Outbound::lazy(&bad),
            Err(OutboundError::BadNetwork(_))
        ));
        let zero = OutboundSettings {
            per_host_requests_per_second: 0,
            ..OutboundSettings::default()
        };
        assert!(matches!(
            Outbound::lazy(&zero),
            Err(OutboundError::ZeroRate)
        ));
        let single = OutboundSettings {
            allow_private_networks: vec!["127.0.0.1".into()],
            ..OutboundSettings::default()
        };
        assert!(Outbound::lazy(&single).is_ok());
    }

    #[tokio::test]
    async fn literal_and_resolved_internal_targets_are_refused_before_sending() {
        let outbound = Outbound::new(&OutboundSettings::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://localhost:9/",
        ] {
            let req = outbound.request(reqwest::Method::GET, url).unwrap();
            let err = outbound.send(req).await.unwrap_err();
            assert!(matches!(err, Error::TargetRefused(_)), "{url}: {err:?}");
            assert_eq!(err.reason(), crate::Reason::Network);
        }
        // A name is refused by the resolver, which names it.
        let req = outbound
            .request(reqwest::Method::GET, "http://localhost:9/")
            .unwrap();
        match outbound.send(req).await {
            Err(Error::TargetRefused(host)) => assert_eq!(host, "localhost"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_permitted_host_name_is_resolved_when_connecting_and_reached() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(204))
            .expect(2)
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let port = server.address().port();
        for url in [
            format!("http://localhost:{port}/v2/"),
            format!("http://127.0.0.1:{port}/v2/"),
        ] {
            let req = outbound.request(reqwest::Method::GET, &url).unwrap();
            let response = outbound.send(req).await.unwrap();
            assert_eq!(response.status().as_u16(), 204, "{url}");
        }
    }

    fn loopback(tweak: impl FnOnce(&mut OutboundSettings)) -> Outbound {
        let mut settings = crate::testing::loopback_settings().outbound;
        tweak(&mut settings);
        Outbound::new(&settings).unwrap()
    }

    #[tokio::test]
    async fn a_rate_limited_host_is_paused_without_sending() {
        use wiremock::matchers::path;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(path("/limited"))
            .and(wiremock::matchers::header("user-agent", USER_AGENT))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
            .expect(1)
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let url = format!("{}/limited", server.uri());
        for _ in 0..3 {
            let req = outbound.request(reqwest::Method::GET, &url).unwrap();
            match outbound.send(req).await {
                Err(Error::RateLimited {
                    retry_after: Some(wait),
                }) => assert!(wait <= Duration::from_secs(30) && wait > Duration::from_secs(25)),
                other => panic!("{other:?}"),
            }
        }
        // `expect(1)`: the later calls never reached the provider.
    }

    #[tokio::test]
    async fn the_per_host_limit_queues_then_reports_rate_limited() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let outbound = loopback(|s| {
            s.per_host_requests_per_second = 1;
            s.per_host_burst = 2;
            s.max_rate_wait_ms = 100;
        });
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let req = outbound
                .request(reqwest::Method::GET, &server.uri())
                .unwrap();
            outcomes.push(outbound.send(req).await.map(|r| r.status().as_u16()));
        }
        assert!(matches!(outcomes[0], Ok(200)) && matches!(outcomes[1], Ok(200)));
        assert!(
            matches!(outcomes[2], Err(Error::RateLimited { .. })),
            "{:?}",
            outcomes[2]
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_tls_failures_are_typed() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/"),
            )
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let req = outbound
            .request(reqwest::Method::GET, &server.uri())
            .unwrap();
        assert_eq!(outbound.send(req).await.unwrap().status(), 302);
        // TLS to a plain-HTTP server fails in the handshake.
        let https = server.uri().replace("http://", "https://");
        let req = outbound.request(reqwest::Method::GET, &https).unwrap();
        let err = outbound.send(req).await.unwrap_err();
        assert_eq!(err.reason(), crate::Reason::Tls, "{err:?}");
    }

    #[tokio::test]
    async fn oversized_bodies_are_bad_responses() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(200).set_body_string(format!("\"{}\"", "x".repeat(2048))),
            )
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let req = outbound
            .request(reqwest::Method::GET, &server.uri())
            .unwrap();
        let response = outbound.send(req).await.unwrap();
        let read: Result<String, _> = read_json(response, 1024, "big").await;
        assert!(matches!(read, Err(Error::BadResponse(_))), "{read:?}");
    }

    #[test]
    fn cursors_must_stay_under_the_api_root() {
        let base = "https://gitlab.example.com/api/v4";
        assert!(
            check_cursor_url(base, "https://gitlab.example.com/api/v4/projects?page=2").is_ok()
        );
        for bad in [
            "https://gitlab.example.com.evil.com/api/v4/projects",
            "https://gitlab.example.com/api/v40/x",
            "http://gitlab.example.com/api/v4/projects",
            "https://gitlab.example.com/api/v4/projects#frag",
        ] {
            assert!(
                matches!(check_cursor_url(base, bad), Err(Error::InvalidCursor)),
                "{bad}"
            );
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rate_limit_signals_and_waits() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limit_signal(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(7))
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset = (now + 120).to_string();
        let gh = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", reset.as_str()),
        ]);
        let wait = rate_limit_signal(StatusCode::FORBIDDEN, &gh).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        // a plain 403 is a permission problem, not a rate limit
        let plain = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limit_signal(StatusCode::FORBIDDEN, &plain), None);
        assert_eq!(
            rate_limit_signal(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            Some(DEFAULT_RETRY_AFTER)
        );
        let huge = headers(&[("retry-after", "999999")]);
        assert_eq!(retry_after(&huge), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let dated = headers(&[("retry-after", date.as_str())]);
        let d = retry_after(&dated).unwrap();
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn link_next_finds_the_next_relation() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/installation/repositories?page=2>; rel="next", <https://api.github.com/installation/repositories?page=5>; rel="last""#,
        )]);
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.github.com/installation/repositories?page=2")
        );
        let oci = headers(&[("link", r#"</v2/_catalog?last=b&n=2>; rel="next""#)]);
        assert_eq!(link_next(&oci).as_deref(), Some("/v2/_catalog?last=b&n=2"));
        let last_only = headers(&[("link", r#"<https://x/?page=1>; rel="prev""#)]);
        assert_eq!(link_next(&last_only), None);
    }
}
