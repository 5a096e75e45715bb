use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::testing::fixture::Fixture;
use crate::testing::{Conformance, assert_conformance};
use crate::{ConnectorFactory, Health};

const TOKEN: &str = "glpat-testtoken-0000000000";

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"baseUrl": url, "expiryWarningDays": 14});
    Fixture::new(&Factory, ("gitlab-token", TOKEN), config).await
}

fn token_info(expires_in_days: Option<i64>, active: bool, revoked: bool) -> Value {
    let expires = expires_in_days
        .map(|d| chrono::Utc::now().date_naive() + chrono::TimeDelta::days(d))
        .map(|d| d.to_string());
    json!({"id": 1, "name": "ci", "revoked": revoked, "active": active, "scopes": ["read_api"],
           "user_id": 3, "created_at": "2026-01-01T00:00:00Z", "expires_at": expires})
}

async fn mount_self(f: &Fixture, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/api/v4/personal_access_tokens/self"))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(response)
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_a_healthy_instance() {
    let f = fixture().await;
    mount_self(
        &f,
        ResponseTemplate::new(200).set_body_json(token_info(Some(200), true, false)),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/projects"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&f.server)
        .await;
    assert_conformance(Conformance {
        config: json!({"baseUrl": f.server.uri(), "expiryWarningDays": 14, "membership": true}),
        ..f.healthy_conformance(vec![TOKEN.into()])
    })
    .await;
}

#[tokio::test]
async fn token_lifecycle_is_judged() {
    for (info, health, reason) in [
        (token_info(None, true, false), Health::Healthy, None),
        (
            token_info(Some(5), true, false),
            Health::Degraded,
            Some(Reason::CredentialExpiring),
        ),
        (
            token_info(Some(14), true, false),
            Health::Degraded,
            Some(Reason::CredentialExpiring),
        ),
        (token_info(Some(15), true, false), Health::Healthy, None),
        (
            token_info(Some(30), false, false),
            Health::Unhealthy,
            Some(Reason::AuthFailed),
        ),
        (
            token_info(Some(30), true, true),
            Health::Unhealthy,
            Some(Reason::AuthFailed),
        ),
    ] {
        let f = fixture().await;
        mount_self(&f, ResponseTemplate::new(200).set_body_json(info.clone())).await;
        let report = f.build().check_health().await;
        assert_eq!(
            (report.health, report.reason),
            (health, reason),
            "{info}: {report:?}"
        );
        let expected = info["expires_at"]
            .as_str()
            .map(|day| format!("{day}T00:00:00Z"));
        assert_eq!(
            report
                .credential_expires_at
                .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            expected,
            "the expiry is reported for the alert policy"
        );
    }
}

#[tokio::test]
async fn token_kinds_without_the_self_endpoint_fall_back_to_user() {
    for status in [403, 404] {
        let f = fixture().await;
        mount_self(&f, ResponseTemplate::new(status)).await;
        Mock::given(method("GET"))
            .and(path("/api/v4/user"))
            .and(header("PRIVATE-TOKEN", TOKEN))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": 3, "username": "bot"})),
            )
            .expect(1)
            .mount(&f.server)
            .await;
        assert_eq!(f.build().check_health().await, HealthReport::healthy());
    }
    let f = fixture().await;
    mount_self(&f, ResponseTemplate::new(404)).await;
    Mock::given(method("GET"))
        .and(path("/api/v4/user"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&f.server)
        .await;
    assert_eq!(
        f.build().check_health().await.reason,
        Some(Reason::Forbidden)
    );
}

#[tokio::test]
async fn failures_map_to_typed_reasons() {
    for (response, reason) in [
        (ResponseTemplate::new(401), Reason::AuthFailed),
        (ResponseTemplate::new(500), Reason::ProviderDegraded),
        (ResponseTemplate::new(502), Reason::ProviderDegraded),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "12"),
            Reason::RateLimited,
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>"),
            Reason::BadResponse,
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(5)),
            Reason::Timeout,
        ),
    ] {
        let f = fixture().await;
        mount_self(&f, response).await;
        let report = f.build().check_health().await;
        assert_eq!(report.reason, Some(reason), "{report:?}");
        assert!(!format!("{report:?}").contains(TOKEN));
        if reason == Reason::RateLimited {
            assert_eq!(report.retry_after, Some(Duration::from_secs(12)));
        }
    }
}

#[tokio::test]
async fn a_rotated_token_is_read_again_after_a_401() {
    let f = fixture().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/personal_access_tokens/self"))
        .and(header("PRIVATE-TOKEN", TOKEN))
        .respond_with(ResponseTemplate::new(401))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/personal_access_tokens/self"))
        .and(header("PRIVATE-TOKEN", "glpat-rotated"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_info(None, true, false)))
        .expect(1)
        .mount(&f.server)
        .await;
    let c = f.build();
    // cache the old token, then rotate it in the store
    let credential = crate::secrets::TenantRef::new("t", f.credential().unwrap());
    let _ = f.env.secrets.resolve(&credential).await.unwrap();
    f.write_secret("gitlab-token", "glpat-rotated");
    assert_eq!(c.check_health().await, HealthReport::healthy());
}

#[tokio::test]
async fn projects_follow_keyset_pages() {
    let f = fixture().await;
    let next = format!(
        "{}/api/v4/projects?id_after=2&order_by=id&pagination=keyset&per_page=100&sort=asc",
        f.server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/api/v4/projects"))
        .and(query_param("id_after", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!([{"id": 3, "path_with_namespace": "g/c", "web_url": "https://gitlab.example.com/g/c"}]),
        ))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/projects"))
        .and(query_param("pagination", "keyset"))
        .and(query_param("membership", "true"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str())
                .set_body_json(json!([
                    {"id": 1, "path_with_namespace": "g/a"},
                    {"id": 2, "path_with_namespace": "g/b"}
                ])),
        )
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    let names: Vec<_> = first.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["g/a", "g/b"]);
    let second = c
        .list_resources(first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.resources[0].id, "3");
    assert_eq!(second.next_cursor, None);
    assert!(matches!(
        c.list_resources(Some("http://10.0.0.1/api/v4/projects"))
            .await,
        Err(Error::InvalidCursor)
    ));
}

#[test]
fn expiry_accepts_a_date_or_a_date_time() {
    let day = NaiveDate::from_ymd_opt(2020, 8, 31);
    assert_eq!(expiry_day("2020-08-31"), day);
    assert_eq!(expiry_day("2020-08-31T15:53:00.073Z"), day);
    assert_eq!(expiry_day("soon"), None);
    assert_eq!(expiry_day("2020-08"), None);
}

#[test]
fn config_keeps_wire_names_and_limits() {
    let schema = Factory.config_schema();
    for key in ["baseUrl", "expiryWarningDays", "membership"] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
    let too_long = json!({"baseUrl": "https://gitlab.com", "expiryWarningDays": 400});
    assert_eq!(
        Factory
            .validate_config(too_long.as_object().unwrap())
            .unwrap_err()
            .field(),
        "config.expiryWarningDays"
    );
}

#[tokio::test]
async fn scopes_that_cannot_read_projects_are_forbidden() {
    for (scopes, health) in [
        (json!(["read_api"]), Health::Healthy),
        (json!(["api"]), Health::Healthy),
        (json!(["read_user", "read_repository"]), Health::Degraded),
        (json!([]), Health::Degraded),
    ] {
        let f = fixture().await;
        let mut info = token_info(Some(200), true, false);
        info["scopes"] = scopes.clone();
        mount_self(&f, ResponseTemplate::new(200).set_body_json(info)).await;
        let report = f.build().check_health().await;
        assert_eq!(report.health, health, "{scopes}: {report:?}");
        if health == Health::Degraded {
            assert_eq!(report.reason, Some(Reason::Forbidden));
            assert!(report.message.unwrap().contains("read_api"));
        }
    }
    // an instance that does not tell the scopes is not judged on them
    let f = fixture().await;
    let mut info = token_info(Some(200), true, false);
    info.as_object_mut().unwrap().remove("scopes");
    mount_self(&f, ResponseTemplate::new(200).set_body_json(info)).await;
    assert_eq!(f.build().check_health().await.health, Health::Healthy);
}

#[tokio::test]
async fn ratelimit_headers_warn_before_the_quota_runs_out() {
    let reset = chrono::Utc::now().timestamp() + 600;
    for (remaining, health) in [
        (1999, Health::Healthy),
        (200, Health::Healthy),
        (199, Health::Degraded),
    ] {
        let f = fixture().await;
        mount_self(
            &f,
            ResponseTemplate::new(200)
                .set_body_json(token_info(Some(200), true, false))
                .insert_header("RateLimit-Limit", "2000")
                .insert_header("RateLimit-Remaining", remaining.to_string().as_str())
                .insert_header("RateLimit-Reset", reset.to_string().as_str()),
        )
        .await;
        let report = f.build().check_health().await;
        assert_eq!(report.health, health, "{remaining}: {report:?}");
        let quota = report.quota.unwrap();
        assert_eq!((quota.remaining, quota.limit), (remaining, Some(2000)));
        assert_eq!(quota.reset_at.unwrap().timestamp(), reset);
        if health == Health::Degraded {
            assert_eq!(report.reason, Some(Reason::QuotaLow));
            assert!(report.message.unwrap().contains("199 of 2000"));
        }
    }
    // an expiring token outranks a low quota; the quota is reported all the same
    let f = fixture().await;
    mount_self(
        &f,
        ResponseTemplate::new(200)
            .set_body_json(token_info(Some(3), true, false))
            .insert_header("RateLimit-Limit", "2000")
            .insert_header("RateLimit-Remaining", "1"),
    )
    .await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::CredentialExpiring));
    assert_eq!(report.quota.unwrap().remaining, 1);
}
