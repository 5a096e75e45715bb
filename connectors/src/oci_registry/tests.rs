use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::Reason;
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
