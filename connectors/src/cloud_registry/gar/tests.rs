use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;

const PRIVATE_KEY: &str = include_str!("../../../tests/fixtures/service-account-test-key.pk8.pem");
const PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/github-app-test-key.pub.pem");
const EMAIL: &str = "scanner@test-project.iam.gserviceaccount.com";
const ACCESS_TOKEN: &str = "ya29.test-access-token";
const REPOS: &str = "/v1/projects/test-project/locations/europe-west1/repositories";

fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "kid-1",
        "private_key": PRIVATE_KEY,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
    })
    .to_string()
}

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"projectId": "test-project", "location": "europe-west1", "apiBaseUrl": url});
    // The key's token_uri is set once the mock's address is known (write_secret below).
    let f = Fixture::new(&Factory, ("gcp-sa", "{}"), config).await;
    f.write_secret("gcp-sa", &key_json(&format!("{}/token", f.server.uri())));
    f
}

#[derive(Deserialize)]
struct Form {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct SeenClaims {
    iss: String,
    scope: String,
    iat: i64,
    exp: i64,
}

/// Google's token endpoint as documented: a JWT bearer grant whose assertion verifies with the
/// service account's public key, with its `aud` the token URI.
async fn mount_token_endpoint(f: &Fixture) {
    let audience = format!("{}/token", f.server.uri());
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(move |r: &Request| {
            let Ok(form) = serde_urlencoded_form(&r.body) else {
                return false;
            };
            if form.grant_type != GRANT_TYPE {
                return false;
            }
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_audience(&[audience.as_str()]);
            validation.set_issuer(&[EMAIL]);
            match jsonwebtoken::decode::<SeenClaims>(&form.assertion, &key, &validation) {
                Ok(data) => {
                    data.header.kid.as_deref() == Some("kid-1")
                        && data.claims.iss == EMAIL
                        && data.claims.scope == SCOPE
                        && data.claims.exp - data.claims.iat == 3600
                }
                Err(_) => false,
            }
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ))
        .with_priority(10)
        .mount(&f.server)
        .await;
}

fn serde_urlencoded_form(body: &[u8]) -> Result<Form, ()> {
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body).into_owned().collect();
    Ok(Form {
        grant_type: pairs.get("grant_type").cloned().ok_or(())?,
        assertion: pairs.get("assertion").cloned().ok_or(())?,
    })
}

async fn mount_repositories(f: &Fixture) {
    Mock::given(method("GET"))
        .and(path(REPOS))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"repositories": [
            {"name": "projects/test-project/locations/europe-west1/repositories/images", "format": "DOCKER"},
            {"name": "projects/test-project/locations/europe-west1/repositories/jars", "format": "MAVEN"}
        ]})))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(REPOS))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_googles_exchange() {
    let f = fixture().await;
    mount_token_endpoint(&f).await;
    mount_repositories(&f).await;
    assert_conformance(f.healthy_conformance(vec![ACCESS_TOKEN.into(), "MIIE".into()])).await;
}

#[tokio::test]
async fn a_check_with_a_cached_token_is_one_request() {
    let f = fixture().await;
    mount_token_endpoint(&f).await;
    mount_repositories(&f).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    assert_eq!(f.server.received_requests().await.unwrap().len(), 2);
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let requests = f.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].url.path(), REPOS);
    assert_eq!(requests[2].url.query(), Some("pageSize=1"));
}

#[tokio::test]
async fn docker_repositories_are_listed_page_by_page() {
    let f = fixture().await;
    mount_token_endpoint(&f).await;
    Mock::given(method("GET"))
        .and(path(REPOS))
        .and(query_param("pageToken", "tok/2=="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"repositories": [
            {"name": "projects/test-project/locations/europe-west1/repositories/more", "format": "DOCKER"}
        ]})))
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path(REPOS))
        .and(query_param("pageSize", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"repositories": [
            {"name": "projects/test-project/locations/europe-west1/repositories/images", "format": "DOCKER"},
            {"name": "projects/test-project/locations/europe-west1/repositories/jars", "format": "MAVEN"}
        ], "nextPageToken": "tok/2=="})))
        .with_priority(2)
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    let names: Vec<_> = first.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["images"]);
    assert_eq!(
        first.resources[0].id,
        "projects/test-project/locations/europe-west1/repositories/images"
    );
    let second = c
        .list_resources(first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.resources[0].name, "more");
    assert_eq!(second.next_cursor, None);
    assert!(matches!(
        c.list_resources(Some("a b")).await,
        Err(Error::InvalidCursor)
    ));
}

#[tokio::test]
async fn an_assertion_from_another_key_is_refused_as_auth_failed() {
    let f = fixture().await;
    mount_token_endpoint(&f).await;
    mount_repositories(&f).await;
    // A key whose private half is not the one the token endpoint knows.
    let rogue = include_str!("../../../../tests/fixtures/jwt-rs256.pem");
    let mut key: serde_json::Value =
        serde_json::from_str(&key_json(&format!("{}/token", f.server.uri()))).unwrap();
    key["private_key"] = json!(rogue);
    f.write_secret("gcp-sa", &key.to_string());
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
}

#[tokio::test]
async fn a_secret_that_is_no_key_is_credential_unavailable() {
    let f = fixture().await;
    mount_token_endpoint(&f).await;
    f.write_secret("gcp-sa", "just-a-password-not-json");
    let report = f.build().check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert!(!format!("{report:?}").contains("just-a-password"));
    assert_eq!(f.server.received_requests().await.unwrap().len(), 0);
}

/// The attacker's side: a key whose `token_uri` points at an internal address is stopped by
/// the URL policy or the SSRF guard, so the signed assertion never leaves.
#[tokio::test]
async fn a_token_uri_aimed_inside_is_refused() {
    let f = fixture().await;
    for uri in [
        "http://169.254.169.254/computeMetadata/v1/token",
        "https://u:p@evil.test/token",
        "ftp://x/",
    ] {
        f.write_secret("gcp-sa", &key_json(uri));
        let report = f.build().check_health().await;
        assert!(
            matches!(
                report.reason,
                Some(Reason::Network | Reason::CredentialUnavailable)
            ),
            "{uri}: {report:?}"
        );
    }
}

#[test]
fn configurations_are_checked() {
    use crate::provider::ConnectorFactory;
    let ok = |v: serde_json::Value| Factory.validate_config(v.as_object().unwrap());
    let base = json!({"projectId": "p-1", "location": "us"});
    assert!(ok(base.clone()).is_ok());
    for (field, value, name) in [
        ("projectId", json!("../x"), "config.projectId"),
        ("projectId", json!("P"), "config.projectId"),
        ("location", json!("us/../../x"), "config.location"),
        ("tokenUri", json!("https://u:p@x.test/t"), "config.tokenUri"),
        ("apiBaseUrl", json!("nope"), "config.apiBaseUrl"),
        ("pageSize", json!(5000), "config.pageSize"),
    ] {
        let mut bad = base.clone();
        bad[field] = value;
        assert_eq!(ok(bad.clone()).unwrap_err().field(), name, "{bad}");
    }
}

#[test]
fn the_schema_pattern_of_segments_admits_what_valid_segment_admits() {
    let pattern = regex::Regex::new(SEGMENT_PATTERN).unwrap();
    for segment in [
        "europe-west1",
        "us",
        "example.com:project",
        "-us",
        ".us",
        "US",
        "a/b",
        &"a".repeat(63),
        &"a".repeat(64),
    ] {
        assert_eq!(
            pattern.is_match(segment),
            valid_segment(segment),
            "{segment}"
        );
    }
}
