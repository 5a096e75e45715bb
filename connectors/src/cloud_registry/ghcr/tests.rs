use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;
use crate::{Health, Reason};

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

/// `GET /rate_limit` with the token, reporting its expiry `days` from now (none: no header).
async fn mount_rate_limit(f: &Fixture, days: Option<i64>) {
    let mut answer = ResponseTemplate::new(200).set_body_json(json!({
        "resources": {"core": {"limit": 5000, "remaining": 4999, "reset": 0, "used": 1}},
        "rate": {"limit": 5000, "remaining": 4999, "reset": 0, "used": 1}
    }));
    if let Some(days) = days {
        let at = Utc::now() + chrono::Duration::days(days);
        answer = answer.insert_header(
            EXPIRATION_HEADER,
            at.format("%Y-%m-%d %H:%M:%S UTC").to_string().as_str(),
        );
    }
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .and(header("authorization", format!("Bearer {PAT}").as_str()))
        .respond_with(answer)
        .mount(&f.server)
        .await;
}

async fn mount_registry(f: &Fixture, expires_in: Option<u64>) {
    mount_rate_limit(f, None).await;
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
async fn a_cached_registry_token_makes_a_check_two_requests() {
    let f = fixture(true).await;
    mount_registry(&f, Some(300)).await;
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    assert_eq!(f.server.received_requests().await.unwrap().len(), 3);
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
    let requests = f.server.received_requests().await.unwrap();
    let paths: Vec<_> = requests[3..].iter().map(|r| r.url.path()).collect();
    assert_eq!(paths, ["/rate_limit", "/v2/"], "no second exchange");
}

#[tokio::test]
async fn a_token_expiring_within_the_horizon_is_degraded_and_not_before() {
    for (days, expected) in [
        (30, Health::Healthy),
        (15, Health::Healthy),
        (13, Health::Degraded),
    ] {
        let f = fixture(true).await;
        mount_rate_limit(&f, Some(days)).await;
        mount_registry(&f, Some(300)).await;
        let report = f.build().check_health().await;
        assert_eq!(report.health, expected, "{days} days: {report:?}");
        let at = report
            .credential_expires_at
            .expect("the expiry is reported");
        assert!(
            (at - Utc::now() - chrono::Duration::days(days))
                .num_seconds()
                .abs()
                < 5
        );
        if expected == Health::Degraded {
            assert_eq!(report.reason, Some(Reason::CredentialExpiring));
            assert!(
                report
                    .message
                    .unwrap()
                    .contains(&at.format("%Y-%m-%d").to_string())
            );
        }
    }
}

#[test]
fn githubs_expiration_header_is_parsed() {
    let at = parse_expiration("2026-12-20 10:00:00 UTC").unwrap();
    assert_eq!(at.to_rfc3339(), "2026-12-20T10:00:00+00:00");
    let at = parse_expiration("2026-12-20 10:00:00 +0100").unwrap();
    assert_eq!(at.to_rfc3339(), "2026-12-20T09:00:00+00:00");
    assert_eq!(parse_expiration("soon"), None);
    let now = Utc::now();
    assert_eq!(judge_expiry(None, 14, now), HealthReport::healthy());
    let past = judge_expiry(Some(now - chrono::Duration::days(1)), 14, now);
    assert_eq!(past.reason, Some(Reason::CredentialExpiring));
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
        (
            json!({"expiryWarningDays": 366}),
            "config.expiryWarningDays",
        ),
    ] {
        assert_eq!(ok(bad.clone()).unwrap_err().field(), field, "{bad}");
    }
}
