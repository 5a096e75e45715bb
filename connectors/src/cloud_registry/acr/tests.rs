use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;

const TENANT_ID: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000c11e";
const CLIENT_SECRET: &str = "sp-client-secret-xyz";

/// A JWT-shaped token (unsigned: the connector only reads its `exp`) expiring in `secs`.
fn jwt(label: &str, secs: i64) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.sig-{label}",
        b64(json!({"alg": "RS256", "typ": "JWT"})),
        b64(json!({"exp": Utc::now().timestamp() + secs, "label": label}))
    )
}

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"loginServer": url, "authorityUrl": url, "tenantId": TENANT_ID, "clientId": CLIENT_ID});
    Fixture::new(&Factory, ("acr-sp", CLIENT_SECRET), config).await
}

/// Microsoft's exchange for one client secret: the tokens it yields are labelled with
/// `label`, so a test can tell whose they are.
async fn mount_exchange(f: &Fixture, secret: &str, label: &str) {
    let service = url::Url::parse(&f.server.uri()).unwrap();
    let service = format!(
        "{}:{}",
        service.host_str().unwrap(),
        service.port().unwrap()
    );
    let aad = format!("aad-{label}");
    let refresh = jwt(&format!("refresh-{label}"), 3 * 3600);
    let access = jwt(&format!("access-{label}"), 75 * 60);
    let secret_form = format!("client_secret={secret}");
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT_ID}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .and(body_string_contains(secret_form.as_str()))
        .and(body_string_contains(
            "scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": aad}),
        ))
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/exchange"))
        .and(body_string_contains("grant_type=access_token"))
        .and(body_string_contains(
            format!("service={}", service.replace(':', "%3A")).as_str(),
        ))
        .and(body_string_contains(format!("tenant={TENANT_ID}").as_str()))
        .and(body_string_contains(format!("access_token={aad}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"refresh_token": refresh})))
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("scope=registry%3Acatalog%3A*"))
        .and(body_string_contains(
            format!("refresh_token={refresh}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": access})))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .and(header("authorization", format!("Bearer {access}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"repositories": [format!("repo-of-{label}")]})),
        )
        .mount(&f.server)
        .await;
}

async fn mount_unauthorized_catalog(f: &Fixture) {
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_microsofts_exchange() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    mount_unauthorized_catalog(&f).await;
    let access = jwt("access-t", 75 * 60);
    assert_conformance(f.healthy_conformance(vec![CLIENT_SECRET.into(), access])).await;
}

#[tokio::test]
async fn a_check_with_cached_tokens_is_one_request() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    mount_unauthorized_catalog(&f).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let paths = |rs: Vec<Request>| {
        rs.into_iter()
            .map(|r| r.url.path().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(f.server.received_requests().await.unwrap()),
        [
            format!("/{TENANT_ID}/oauth2/v2.0/token"),
            "/oauth2/exchange".into(),
            "/oauth2/token".into(),
            "/v2/_catalog".into()
        ]
    );
    // Another connector of the same integration (the API builds its own) shares the tokens.
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let requests = f.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 5, "one request, not four");
    assert_eq!(requests[4].url.path(), "/v2/_catalog");
    assert_eq!(requests[4].url.query(), Some("n=1"));
}

/// The attacker's side: another tenant's integration with the same id and configuration,
/// with its own service principal secret, gets tokens minted from its own secret, never the
/// first tenant's cached ones.
#[tokio::test]
async fn tenants_never_share_minted_tokens() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "victim").await;
    mount_exchange(&f, "attackers-own-secret", "attacker").await;
    mount_unauthorized_catalog(&f).await;
    let victim = f.build();
    let page = victim.list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "repo-of-victim");

    f.write_tenant_secret("attacker", "acr-sp", "attackers-own-secret");
    let mut spec = f.spec(Some(
        "authref://file/tenants/attacker/acr-sp".parse().unwrap(),
    ));
    spec.tenant = "attacker".into();
    // Same integration id, same configuration: only the tenant (and its secret) differ.
    assert_eq!(spec.id, f.spec(f.credential()).id);
    let attacker = crate::provider::ConnectorFactory::build(&Factory, &spec, &f.env).unwrap();
    let page = attacker.list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "repo-of-attacker");
    // And the attacker naming the victim's secret is refused before anything is sent.
    let before = f.server.received_requests().await.unwrap().len();
    let mut stolen = f.spec(f.credential());
    stolen.tenant = "attacker".into();
    let report = crate::provider::ConnectorFactory::build(&Factory, &stolen, &f.env)
        .unwrap()
        .check_health()
        .await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert_eq!(f.server.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn a_refused_access_token_mints_the_chain_anew_once() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    mount_unauthorized_catalog(&f).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    // The registry now refuses every token: one new chain is minted, then it gives up.
    f.server.reset().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(1)
        .mount(&f.server)
        .await;
    let report = c.check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    let catalog_calls = f
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/_catalog")
        .count();
    assert_eq!(catalog_calls, 2);
}

#[tokio::test]
async fn a_wrong_client_secret_is_auth_failed() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT_ID}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": "invalid_client", "error_description": "AADSTS7000215"}),
        ))
        .with_priority(10)
        .mount(&f.server)
        .await;
    f.write_secret("acr-sp", "wrong-secret");
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    assert!(!format!("{report:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn the_catalog_is_listed_page_by_page() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    let access = jwt("access-t", 75 * 60);
    Mock::given(method("GET"))
        .and(path("/v2/_catalog"))
        .and(query_param("last", "b"))
        .and(header("authorization", format!("Bearer {access}").as_str()))
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
        .with_priority(2)
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some("b"));
    let second = c.list_resources(Some("b")).await.unwrap();
    assert_eq!(second.resources[0].name, "c");
    assert!(matches!(
        c.list_resources(Some("a&n=1")).await,
        Err(Error::InvalidCursor)
    ));
}

#[test]
fn jwt_expiry_is_read_and_garbage_is_not() {
    let token = jwt("x", 100);
    let exp = jwt_expiry(&token).unwrap();
    assert!((exp - Utc::now()).num_seconds() > 90);
    assert_eq!(jwt_expiry("not-a-jwt"), None);
    assert_eq!(jwt_expiry("a.!!!.c"), None);
    // An unreadable expiry keeps the token a minute at most.
    let m = minted_jwt("opaque".into());
    assert!(m.refresh_at <= Utc::now() + chrono::Duration::seconds(60));
}

#[test]
fn configurations_are_checked() {
    use crate::provider::ConnectorFactory;
    let ok = |v: serde_json::Value| Factory.validate_config(v.as_object().unwrap());
    let base = json!({"loginServer": "https://r.azurecr.io", "tenantId": TENANT_ID, "clientId": CLIENT_ID});
    assert!(ok(base.clone()).is_ok());
    for (field, value, name) in [
        ("tenantId", json!("../evil"), "config.tenantId"),
        ("tenantId", json!("a/b"), "config.tenantId"),
        ("clientId", json!("x&client_secret=y"), "config.clientId"),
        (
            "loginServer",
            json!("https://u:p@r.azurecr.io"),
            "config.loginServer",
        ),
        ("authorityUrl", json!("file:///etc"), "config.authorityUrl"),
        ("catalogPageSize", json!(0), "config.catalogPageSize"),
    ] {
        let mut bad = base.clone();
        bad[field] = value;
        assert_eq!(ok(bad.clone()).unwrap_err().field(), name, "{bad}");
    }
}

#[tokio::test]
async fn verification_mints_the_chain_anew_and_proves_the_secret() {
    let f = fixture().await;
    mount_exchange(&f, CLIENT_SECRET, "t").await;
    mount_unauthorized_catalog(&f).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    // The client secret is replaced by a wrong one: checks still pass on the cached tokens
    // (they are valid), but verification asks Entra ID again and fails.
    f.write_secret("acr-sp", "now-wrong");
    f.env
        .secrets
        .invalidate(&f.spec(f.credential()).credential().unwrap())
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT_ID}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&f.server)
        .await;
    assert_eq!(c.check_health().await, HealthReport::healthy());
    let report = c.test_connection().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
}

#[test]
fn the_schema_pattern_of_ids_admits_what_valid_id_admits() {
    let pattern = regex::Regex::new(ID_PATTERN).unwrap();
    for id in [
        "contoso.onmicrosoft.com",
        "0b5f3c1e-1234-4f00-9a2b-3c4d5e6f7a8b",
        ".x",
        "...",
        ".",
        "..",
        "a b",
        "a/b",
        "-",
    ] {
        assert_eq!(pattern.is_match(id), valid_id(id), "{id}");
    }
}
