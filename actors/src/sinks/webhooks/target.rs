//! Webhook targets: what a target URL may be (checked when a subscription is saved), and one
//! signed POST to it through the guarded outbound client (the SSRF guard applies again at
//! delivery time, so a name that later resolves inward is still refused).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use connectors::outbound::{Outbound, PeerCertificate};
use connectors::secrets::{Secret, SecretError};
use connectors::url_check::{self, CredentialName, UrlProblem};
use reqwest::StatusCode;
use url::{Host, Url};
use uuid::Uuid;

use super::signature;

/// Longest target URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Why a target URL is refused. Messages never repeat the URL or any part of it (its host,
/// query, fragment or credentials): they reach API answers and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("longer than {MAX_URL_CHARS} characters")]
    TooLong,
    #[error("the scheme must be http or https")]
    Scheme,
    #[error("must not carry credentials; deliveries are authenticated by their signature")]
    Credentials,
    #[error("{0} looks like a credential; deliveries are authenticated by their signature")]
    SecretParameter(CredentialName),
    #[error("must not have a fragment")]
    Fragment,
    #[error("has no host")]
    NoHost,
    /// The host name did not resolve (the name is kept for logs, not shown).
    #[error("the host name cannot be resolved")]
    Unresolvable(String),
    /// The address the guard refused (kept for logs, not shown).
    #[error(
        "the host is, or resolves to, a loopback, private, link-local or reserved address; allow its network in [connectors.outbound] allow_private_networks to use it"
    )]
    Refused(String),
}

/// Checks a target URL's shape and, resolving its host now, that the SSRF guard lets
/// deliveries go there.
///
/// # Errors
/// [`TargetError`] naming the first problem.
pub async fn check(outbound: &Outbound, raw: &str) -> Result<Url, TargetError> {
    let url = check_shape(raw)?;
    let host = url.host().ok_or(TargetError::NoHost)?;
    let guard = outbound.guard();
    match host {
        Host::Ipv4(ip) => permit(guard, IpAddr::V4(ip), &ip.to_string())?,
        Host::Ipv6(ip) => permit(guard, IpAddr::V6(ip), &ip.to_string())?,
        Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| TargetError::Unresolvable(name.to_owned()))?
                .collect();
            if addrs.is_empty() {
                return Err(TargetError::Unresolvable(name.to_owned()));
            }
            for a in addrs {
                permit(guard, a.ip(), name)?;
            }
        }
    }
    Ok(url)
}

/// The checks that need no network.
///
/// # Errors
/// [`TargetError`] naming the first problem.
pub fn check_shape(raw: &str) -> Result<Url, TargetError> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw.trim()).map_err(|_| TargetError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    // The one rule for credentials in URLs, shared with integration configs.
    url_check::check(&url).map_err(|problem| match problem {
        UrlProblem::Userinfo => TargetError::Credentials,
        UrlProblem::Fragment => TargetError::Fragment,
        UrlProblem::CredentialParameter(name) => TargetError::SecretParameter(name),
    })?;
    if url.host().is_none() {
        return Err(TargetError::NoHost);
    }
    Ok(url)
}

fn permit(
    guard: &connectors::outbound::SsrfGuard,
    ip: IpAddr,
    shown: &str,
) -> Result<(), TargetError> {
    if guard.permits(ip) {
        Ok(())
    } else {
        Err(TargetError::Refused(shown.to_owned()))
    }
}

/// What the target answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: delivered.
    Accepted(u16),
    /// Any other status; `retry_after` when the target asked for a pause (429, 503).
    Refused {
        status: u16,
        retry_after: Option<Duration>,
    },
}

/// What the target answered, and the TLS certificate it answered over (read on this
/// connection; `None` for `http` targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub answer: Answer,
    pub certificate: Option<PeerCertificate>,
}

/// Why an attempt got no answer. Messages are safe to store and show: no secret, no body.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the subscription's secretAuthRef is not a valid authref URI")]
    BadSecretRef,
    #[error("signing secret unavailable: {0}")]
    Secret(#[from] SecretError),
    #[error("the target URL is not valid")]
    BadUrl,
    #[error(transparent)]
    Transport(#[from] connectors::Error),
}

impl SendError {
    /// How long the secret store asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Secret(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Most of a response body read (then dropped) so the connection can be reused.
const MAX_DRAIN_BYTES: usize = 64 * 1024;

/// What a POST carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// One CloudEvent in structured mode; its id is also the `Idempotency-Key`.
    Event(Uuid),
    /// A CloudEvents JSON batch of this many events; consumers de-duplicate on each event's
    /// `id`.
    Batch(usize),
}

/// POSTs `body` (a CloudEvent in structured JSON, or a batch of them) to `url`, signed with
/// `secret` at `timestamp` (unix seconds), and tells what the target answered and the
/// certificate it presented.
///
/// # Errors
/// [`SendError`] when no HTTP answer came: the SSRF guard refused the target, or the
/// connection failed or timed out.
pub async fn post(
    outbound: &Outbound,
    timeout: Duration,
    url: &str,
    secret: &Secret,
    payload: Payload,
    timestamp: i64,
    body: Vec<u8>,
) -> Result<Reply, SendError> {
    let parsed = Url::parse(url).map_err(|_| SendError::BadUrl)?;
    // A literal address never reaches the guarded resolver: judge it here.
    let literal = match parsed.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(Host::Domain(_)) => None,
        None => return Err(SendError::BadUrl),
    };
    if let Some(ip) = literal
        && !outbound.guard().permits(ip)
    {
        return Err(connectors::Error::TargetRefused(ip.to_string()).into());
    }
    let client = outbound.client().map_err(connectors::Error::Network)?;
    let signature = signature::sign(secret.expose().as_bytes(), timestamp, &body);
    let request = client.post(parsed).timeout(timeout);
    let request = match payload {
        Payload::Event(event_id) => {
            let id = event_id.to_string();
            request
                .header(reqwest::header::CONTENT_TYPE, signature::CONTENT_TYPE)
                .header(signature::EVENT_ID_HEADER, &id)
                .header(signature::IDEMPOTENCY_KEY_HEADER, &id)
        }
        Payload::Batch(n) => request
            .header(reqwest::header::CONTENT_TYPE, signature::BATCH_CONTENT_TYPE)
            .header(signature::BATCH_SIZE_HEADER, n.to_string()),
    };
    let response = request
        .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(signature::SIGNATURE_HEADER, signature)
        .headers(connectors::trace::headers())
        .body(body)
        .send()
        .await
        .map_err(connectors::Error::from)?;
    let certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .and_then(PeerCertificate::from_der);
    let status = response.status();
    let retry_after = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
    .then(|| connectors::outbound::retry_after(response.headers()))
    .flatten();
    drain(response).await;
    let answer = if status.is_success() {
        Answer::Accepted(status.as_u16())
    } else {
        Answer::Refused {
            status: status.as_u16(),
            retry_after,
        }
    };
    Ok(Reply {
        answer,
        certificate,
    })
}

async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_DRAIN_BYTES {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_that_are_refused() {
        for (raw, expected) in [
            ("not a url", TargetError::Invalid),
            ("/relative", TargetError::Invalid),
            ("ftp://example.com/x", TargetError::Scheme),
            ("file:///etc/passwd", TargetError::Scheme),
            ("https://user:pw@example.com/", TargetError::Credentials),
            ("https://user@example.com/", TargetError::Credentials),
            ("https://example.com/#frag", TargetError::Fragment),
            (
                "https://example.com/hook?access_token=x",
                TargetError::SecretParameter(CredentialName::Named("access_token")),
            ),
            (
                "https://example.com/hook?API-Key=x",
                TargetError::SecretParameter(CredentialName::Named("api_key")),
            ),
            (
                "https://example.com/hook?private_token=x",
                TargetError::SecretParameter(CredentialName::Named("private_token")),
            ),
            (
                "https://example.com/hook?X-Amz-Signature=x",
                TargetError::SecretParameter(CredentialName::Named("x-amz-signature")),
            ),
            (
                "https://example.com/hook?refresh_token=x",
                TargetError::SecretParameter(CredentialName::EndsWith("token")),
            ),
        ] {
            assert_eq!(check_shape(raw), Err(expected), "{raw}");
        }
        assert!(check_shape(&format!("https://e.com/{}", "a".repeat(MAX_URL_CHARS))).is_err());
        assert!(check_shape("https://example.com/hook?team=ops").is_ok());
    }

    #[tokio::test]
    async fn refusals_never_repeat_the_url() {
        let strict = Outbound::default();
        for raw in [
            "https://user:SECRETVALUE@example.com/",
            "https://SECRETVALUE@example.com/",
            "https://example.com/#frag-SECRETVALUE",
            "https://example.com/?private_token=SECRETVALUE",
            "https://example.com/?SECRETVALUE_token=x",
            "http://127.0.0.1:9/SECRETVALUE",
            "ftp://SECRETVALUE/x",
        ] {
            let err = check(&strict, raw).await.unwrap_err();
            let text = err.to_string();
            assert!(!text.contains("SECRETVALUE"), "{raw}: {text}");
            assert!(!text.contains("example.com"), "{raw}: {text}");
        }
        // Host names and addresses are kept for logs, never shown.
        for err in [
            TargetError::Unresolvable("SECRETVALUE.example.com".into()),
            TargetError::Refused("SECRETVALUE.example.com".into()),
        ] {
            assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
        }
    }

    #[tokio::test]
    async fn internal_targets_are_refused_unless_allowed() {
        let strict = Outbound::default();
        for raw in [
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest",
            "http://[::1]/x",
            "http://localhost:9/x",
        ] {
            assert!(
                matches!(check(&strict, raw).await, Err(TargetError::Refused(_))),
                "{raw}"
            );
        }
        let loopback = Outbound::new(&connectors::settings::OutboundSettings {
            allow_private_networks: vec!["127.0.0.0/8".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(check(&loopback, "http://127.0.0.1:9/x").await.is_ok());
        assert!(matches!(
            check(&loopback, "http://10.1.2.3/x").await,
            Err(TargetError::Refused(_))
        ));
        assert!(check(&strict, "https://93.184.215.14/hook").await.is_ok());
    }
}
