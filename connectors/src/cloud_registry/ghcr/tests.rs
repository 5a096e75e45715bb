use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;

const PAT: &str = "ghp_personal-access-token-xyz";
const REGISTRY_TOKEN: &str = "ghcr-registry-token-abc";

async fn fixture(org: bool) -> Fixture {
    let config = move |url: &str| {
        let mut c = json!({"registryUrl": url, "apiBaseUrl": url, "username": "octocat"});
        if org {
            c["organization"] = json!("octo-org");
        }
        c
    };
    Fixture::new(&Factory, ("github-token", PAT), config).await
}

async fn mount_registry(f: &Fixture, expires_in: Option<u64>) {
    let mut answer = json!({"token": REGISTRY_TOKEN});
    if let Some(s) = expires_in {
        answer["expires_in"] = json!(s);
    }
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "ghcr.io"))
        .and(basic_auth("octocat", PAT))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .and(header(
            "authorization",
            format!("Bearer {REGISTRY_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\"",
        ))
        .mount(&f.server)
        .await;
}

async fn mount_packages(f: &Fixture, list_path: &str) {
    Mock::given(method("GET"))
        .and(path(list_path))
        .and(query_param("package_type", "container"))
        .and(header("authorization", format!("Bearer {PAT}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "name": "api", "package_type": "container",
             "owner": {"login": "Octo-Org"}, "html_url": "https://github.com/orgs/octo-org/packages/container/package/api"}
        ])))
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_a_ghcr_mock() {
    let f = fixture(true).await;
    mount_registry(&f, Some(300)).await;
    mount_packages(&f, "/orgs/octo-org/packages").await;
    assert_conformance(f.healthy_conformance(vec![PAT.into(), REGISTRY_TOKEN.into()])).await;
}

#[tokio::test]
async fn a_cached_registry_token_makes_a_check_one_request() {
    let f = fixture(true).await;
    mount_registry(&f, Some(300)).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    assert_eq!(f.server.received_requests().await.unwrap().len(), 2);
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let requests = f.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].url.path(), "/v2/");
}

#[tokio::test]
async fn a_refused_registry_token_is_replaced_once() {
    let f = fixture(true).await;
    // The first token the registry hands out is refused at /v2/ (revoked meanwhile).
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "stale"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_registry(&f, Some(300)).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
}

#[tokio::test]
async fn the_users_packages_are_listed_without_an_organization() {
    let f = fixture(false).await;
    mount_packages(&f, "/user/packages").await;
    let page = f.build().list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "octo-org/api");
    assert_eq!(page.resources[0].id, "1");
}

#[tokio::test]
async fn packages_follow_link_pages_that_stay_under_the_api() {
    let f = fixture(true).await;
    let next = format!(
        "{}/orgs/octo-org/packages?package_type=container&per_page=100&page=2",
        f.server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/orgs/octo-org/packages"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 2, "name": "web"}])))
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/octo-org/packages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str())
                .set_body_json(json!([{"id": 1, "name": "api"}])),
        )
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some(next.as_str()));
    let second = c.list_resources(Some(&next)).await.unwrap();
    assert_eq!(second.resources[0].name, "web");
    assert!(matches!(
        c.list_resources(Some("https://attacker.test/orgs/x/packages"))
            .await,
        Err(Error::InvalidCursor)
    ));
}

#[tokio::test]
async fn a_refused_token_is_auth_failed() {
    let f = fixture(true).await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    let report = f.build_with(None).check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
}

#[test]
fn configurations_are_checked() {
    use crate::provider::ConnectorFactory;
    let ok = |v: serde_json::Value| Factory.validate_config(v.as_object().unwrap());
    assert!(ok(json!({})).is_ok());
    for (bad, field) in [
        (json!({"organization": "a/b"}), "config.organization"),
        (
            json!({"registryUrl": "https://u:p@ghcr.io"}),
            "config.registryUrl",
        ),
        (json!({"service": "a b"}), "config.service"),
        (json!({"username": "a:b"}), "config.username"),
    ] {
        assert_eq!(ok(bad.clone()).unwrap_err().field(), field, "{bad}");
    }
}
