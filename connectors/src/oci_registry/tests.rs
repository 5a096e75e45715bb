use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::provider::ConnectorFactory;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;

const USER: &str = "ci";
const PASSWORD: &str = "registry-password-xyz";
const TOKEN: &str = "registry-bearer-token-abc";

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"baseUrl": url, "username": USER});
    Fixture::new(&Factory, ("registry", PASSWORD), config).await
}

/// A registry with basic auth, as `registry` with htpasswd is.
async fn mount_basic(f: &Fixture) {
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .and(basic_auth(USER, PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Basic realm=\"Registry Realm\""),
        )
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_a_basic_auth_registry() {
    let f = fixture().await;
    mount_basic(&f).await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .and(basic_auth(USER, PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"repositories": ["a"]})))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", "Basic realm=\"r\""),
        )
        .mount(&f.server)
        .await;
    assert_conformance(f.healthy_conformance(vec![PASSWORD.into()])).await;
}

#[tokio::test]
async fn bearer_challenge_is_followed_to_a_token() {
    let f = fixture().await;
    let realm = format!("{}/token", f.server.uri());
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "registry.test"))
        .and(query_param("scope", "registry:catalog:*"))
        .and(basic_auth(USER, PASSWORD))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": TOKEN, "expires_in": 300})),
        )
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "registry.test"))
        .and(basic_auth(USER, PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": TOKEN})))
        .mount(&f.server)
        .await;
    for p in ["/v2/", "/v2/_catalog"] {
        Mock::given(method("GET"))
            .and(path(p))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"repositories": ["x/y"]})),
            )
            .with_priority(1)
            .mount(&f.server)
            .await;
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(401).insert_header(
                "www-authenticate",
                format!("Bearer realm=\"{realm}\",service=\"registry.test\"").as_str(),
            ))
            .mount(&f.server)
            .await;
    }
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    let page = c.list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "x/y");
}

#[tokio::test]
async fn refused_or_missing_credentials_are_auth_failed() {
    let f = fixture().await;
    mount_basic(&f).await;
    // no credentials at all
    let report = f.build_with(None).check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    // a password the registry does not take
    let f = fixture().await;
    f.write_secret("registry", "wrong");
    mount_basic(&f).await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    assert!(!format!("{report:?}").contains("wrong"));
}

#[tokio::test]
async fn failures_map_to_typed_reasons() {
    for (response, reason) in [
        (ResponseTemplate::new(500), Reason::ProviderDegraded),
        (ResponseTemplate::new(503), Reason::ProviderDegraded),
        (ResponseTemplate::new(403), Reason::Forbidden),
        (ResponseTemplate::new(404), Reason::BadResponse),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "9"),
            Reason::RateLimited,
        ),
        (ResponseTemplate::new(401), Reason::BadResponse),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(5)),
            Reason::Timeout,
        ),
    ] {
        let f = fixture().await;
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(response)
            .mount(&f.server)
            .await;
        let report = f.build().check_health().await;
        assert_eq!(report.reason, Some(reason), "{report:?}");
    }
    let f = fixture().await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"repositories\": [1,"))
        .mount(&f.server)
        .await;
    assert!(matches!(
        f.build_with(None).list_resources(None).await,
        Err(Error::BadResponse(_))
    ));
}

#[tokio::test]
async fn catalog_follows_link_pages_by_last_name() {
    let f = fixture().await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .and(query_param("last", "b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"repositories": ["c"]})))
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .and(query_param("n", "100"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", "</v2/_catalog?last=b&n=100>; rel=\"next\"")
                .set_body_json(json!({"repositories": ["a", "b"]})),
        )
        .mount(&f.server)
        .await;
    let c = f.build_with(None);
    let first = c.list_resources(None).await.unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some("b"));
    let second = c
        .list_resources(first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.resources.len(), 1);
    assert_eq!(second.next_cursor, None);
    assert!(matches!(
        c.list_resources(Some("A B&x=1")).await,
        Err(Error::InvalidCursor)
    ));
}

#[test]
fn challenges_parse() {
    assert_eq!(
        parse_challenge("Basic realm=\"Registry Realm\""),
        Some(Challenge::Basic)
    );
    assert_eq!(
        parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#
        ),
        Some(Challenge::Bearer {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: Some("repository:samalba/my-app:pull,push".into()),
        })
    );
    assert_eq!(
        parse_challenge("bearer realm=https://x/token"),
        Some(Challenge::Bearer {
            realm: "https://x/token".into(),
            service: None,
            scope: None
        })
    );
    assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    assert_eq!(parse_challenge("Negotiate"), None);
}

/// A token-auth registry: `/v2/` and the catalog take `Bearer {token}` and challenge anything
/// else; the realm hands out `token` for `expires_in` seconds to the integration's credentials.
async fn mount_token_registry(f: &Fixture, token: &str, expires_in: u64) {
    let realm = format!("{}/token", f.server.uri());
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(basic_auth(USER, PASSWORD))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token": token, "expires_in": expires_in})),
        )
        .mount(&f.server)
        .await;
    for p in ["/v2/", "/v2/_catalog"] {
        Mock::given(method("GET"))
            .and(path(p))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"repositories": ["x/y"]})),
            )
            .with_priority(1)
            .mount(&f.server)
            .await;
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(401).insert_header(
                "www-authenticate",
                format!("Bearer realm=\"{realm}\",service=\"registry.test\"").as_str(),
            ))
            .mount(&f.server)
            .await;
    }
}

async fn requests(f: &Fixture) -> usize {
    f.server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_kept_token_makes_one_request_not_three() {
    let f = fixture().await;
    mount_token_registry(&f, TOKEN, 300).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    assert_eq!(requests(&f).await, 3, "ping, token, ping with the token");
    for n in 1..=3 {
        assert_eq!(c.check_health().await, HealthReport::healthy());
        assert_eq!(requests(&f).await, 3 + n, "one request per check");
    }
    // A rebuilt connector of the same integration (a configuration saved again) keeps it.
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    assert_eq!(requests(&f).await, 7);
    // The catalog needs its own scope: its own exchange once, then one request.
    c.list_resources(None).await.unwrap();
    assert_eq!(requests(&f).await, 10);
    c.list_resources(None).await.unwrap();
    assert_eq!(requests(&f).await, 11);
}

/// `token_cache_max_entries = 0` (the operator's way to turn the cache off, and the
/// benchmark's "before"): every check goes through the whole exchange again.
#[tokio::test]
async fn with_no_room_for_tokens_every_check_mints_one() {
    let config = |url: &str| json!({"baseUrl": url, "username": USER});
    let f = Fixture::tuned(&Factory, ("registry", PASSWORD), config, |s| {
        s.outbound.token_cache_max_entries = 0;
    })
    .await;
    mount_token_registry(&f, TOKEN, 300).await;
    let c = f.build();
    for n in 1..=3 {
        assert_eq!(c.check_health().await, HealthReport::healthy());
        assert_eq!(requests(&f).await, 3 * n, "ping, token, ping every time");
    }
    assert!(f.env.tokens.is_empty());
}

#[tokio::test]
async fn an_expired_or_refused_token_is_replaced() {
    let f = fixture().await;
    // One second, less the margin: gone before the next check below.
    mount_token_registry(&f, TOKEN, 1).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.check_health().await, HealthReport::healthy());
    assert_eq!(requests(&f).await, 6, "an expired token is not sent");

    // The registry rotates its signing key: the kept token is refused, and the refusal's
    // challenge leads to a fresh token (ping, token, ping: no extra request).
    let f = fixture().await;
    mount_token_registry(&f, "old-token", 300).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    f.server.reset().await;
    mount_token_registry(&f, "new-token", 300).await;
    assert_eq!(c.check_health().await, HealthReport::healthy());
    let sent: Vec<_> = f.server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        sent[0].headers.get("authorization").unwrap(),
        "Bearer old-token"
    );
    assert_eq!(
        sent[2].headers.get("authorization").unwrap(),
        "Bearer new-token"
    );
    assert_eq!(c.check_health().await, HealthReport::healthy());
    assert_eq!(requests(&f).await, 4);
}

/// Another tenant, or another integration, pointing at the same registry with the same
/// AuthRef text must go through the exchange itself, never ride on a kept token.
#[tokio::test]
async fn a_kept_token_serves_no_other_tenant_or_integration() {
    let f = fixture().await;
    mount_token_registry(&f, TOKEN, 300).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let victims = requests(&f).await;
    let mut other_tenant = f.spec(f.credential());
    other_tenant.tenant = "mallory".into();
    let report = Factory
        .build(&other_tenant, &f.env)
        .unwrap()
        .check_health()
        .await;
    // mallory's reference is outside mallory's namespace: no token, no registry access
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    let mut anonymous = f.spec(None);
    anonymous.tenant = "mallory".into();
    let report = Factory
        .build(&anonymous, &f.env)
        .unwrap()
        .check_health()
        .await;
    assert_ne!(report.health, crate::Health::Healthy, "{report:?}");
    let before = requests(&f).await;
    let mut other_integration = f.spec(f.credential());
    other_integration.id = "another-integration".into();
    let c = Factory.build(&other_integration, &f.env).unwrap();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    assert_eq!(requests(&f).await, before + 3, "its own exchange");
    let bearer = format!("Bearer {TOKEN}");
    let sent = f.server.received_requests().await.unwrap();
    for r in &sent[victims..before] {
        assert_ne!(
            r.headers.get("authorization").map(|v| v.to_str().unwrap()),
            Some(bearer.as_str()),
            "another tenant's check sent the kept token: {r:?}"
        );
    }
}

/// A registry on loopback HTTPS whose certificate (for `127.0.0.1`, trusted through
/// `ca_certificates`) is valid from `not_before` to `not_after` days from now; it answers
/// `GET /v2/` with 200 on each of a bounded number of connections.
async fn tls_registry(
    not_before: i64,
    not_after: i64,
) -> (Fixture, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params.not_before = now + time::Duration::days(not_before);
    params.not_after = now + time::Duration::days(not_after);
    let cert = params.self_signed(&key).unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                      content-length: 2\r\nconnection: close\r\n\r\n{}",
                )
                .await;
            let _ = tls.shutdown().await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("registry-ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let f = Fixture::tuned(
        &Factory,
        ("registry", PASSWORD),
        |_| json!({"baseUrl": format!("https://127.0.0.1:{port}")}),
        |settings| settings.outbound.ca_certificates = vec![ca],
    )
    .await;
    (f, server, dir)
}

#[tokio::test]
async fn a_certificate_about_to_expire_warns_with_its_date() {
    // 20 days left: past the 14-day horizon, healthy, the date reported all the same
    let (f, server, _ca) = tls_registry(-10, 20).await;
    let report = f.build_with(None).check_health().await;
    assert_eq!(report.health, crate::Health::Healthy, "{report:?}");
    let at = report
        .certificate_expires_at
        .expect("the certificate's notAfter");
    let left = at - chrono::Utc::now();
    assert!(left > chrono::Duration::days(19) && left <= chrono::Duration::days(20));
    server.abort();

    // 3 days left: certificate_expiring, with the date
    let (f, server, _ca) = tls_registry(-10, 3).await;
    let report = f.build_with(None).check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (crate::Health::Degraded, Some(Reason::CertificateExpiring)),
        "{report:?}"
    );
    let at = report.certificate_expires_at.unwrap();
    let day = at.format("%Y-%m-%d").to_string();
    assert!(
        report.message.as_deref().unwrap().contains(&day),
        "{report:?}"
    );
    server.abort();
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_fails_with_tls() {
    for (not_before, not_after) in [(-30, -1), (2, 90)] {
        let (f, server, _ca) = tls_registry(not_before, not_after).await;
        let report = f.build_with(None).check_health().await;
        assert_eq!(
            (report.health, report.reason),
            (crate::Health::Unhealthy, Some(Reason::Tls)),
            "{not_before}..{not_after}: {report:?}"
        );
        server.abort();
    }
}
