use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, header_exists, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::testing::assert_conformance;
use crate::testing::fixture::{self, Fixture};
use crate::{ConnectorFactory, Health};

const KEY: &str = include_str!("../../tests/fixtures/github-app-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../../tests/fixtures/github-app-test-key.pub.pem");
const TOKEN: &str = "ghs_testinstallationtoken0000000000000";
const HOOK_SECRET: &str = "hook-signing-secret-42";

async fn fixture() -> Fixture {
    let f = Fixture::new(&Factory, ("github/app-key", KEY), config).await;
    f.write_secret("github/hook", HOOK_SECRET);
    f
}

fn config(url: &str) -> Value {
    json!({"appId": 12345, "installationId": 42, "apiBaseUrl": url})
}

fn token_body(expires_in: chrono::Duration) -> Value {
    json!({"token": TOKEN, "expires_at": (chrono::Utc::now() + expires_in).to_rfc3339()})
}

async fn mount_token(f: &Fixture, expires_in: chrono::Duration, times: impl Into<wiremock::Times>) {
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_body(expires_in)))
        .expect(times)
        .mount(&f.server)
        .await;
}

fn rate_body(limit: u64, remaining: u64) -> Value {
    let reset = chrono::Utc::now().timestamp() + 600;
    let w =
        json!({"limit": limit, "remaining": remaining, "reset": reset, "used": limit - remaining});
    json!({"resources": {"core": w, "search": w}, "rate": w})
}

async fn mount_rate(f: &Fixture, limit: u64, remaining: u64) {
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(rate_body(limit, remaining)))
        .mount(&f.server)
        .await;
}

#[tokio::test]
async fn conformance_against_a_healthy_installation() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 4990).await;
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"total_count": 1, "repositories": [{"id": 1, "full_name": "o/r", "html_url": "https://github.com/o/r"}]}),
        ))
        .mount(&f.server)
        .await;
    assert_conformance(
        f.healthy_conformance(vec![TOKEN.into(), KEY.lines().nth(1).unwrap().into()]),
    )
    .await;
}

#[test]
fn app_jwt_is_rs256_backdated_and_short_lived() {
    let now = chrono::Utc::now();
    let jwt = client::app_jwt("12345", &crate::secrets::Secret::new(KEY), now).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&["12345"]);
    let data = jsonwebtoken::decode::<Value>(&jwt, &key, &validation).unwrap();
    let iat = data.claims["iat"].as_i64().unwrap();
    let exp = data.claims["exp"].as_i64().unwrap();
    assert_eq!(iat, now.timestamp() - 60);
    assert!(exp - now.timestamp() <= 600, "exp at most 10 minutes ahead");
    assert!(exp > now.timestamp());
    let bad = client::app_jwt("1", &crate::secrets::Secret::new("not a key"), now).unwrap_err();
    assert_eq!(bad.reason(), Reason::CredentialUnavailable);
}

#[tokio::test]
async fn installation_token_is_cached_and_one_refresh_is_in_flight() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 4000).await;
    let c = f.build();
    let checks = (0..5).map(|_| {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.check_health().await })
    });
    for check in checks {
        assert_eq!(check.await.unwrap().health, Health::Healthy);
    }
    // `expect(1)` is verified when the server drops.
}

#[tokio::test]
async fn a_token_about_to_expire_is_replaced() {
    let f = fixture().await;
    // Inside the refresh margin: every use needs a new token.
    mount_token(&f, chrono::Duration::minutes(2), 2).await;
    mount_rate(&f, 5000, 4000).await;
    let c = f.build();
    assert_eq!(c.check_health().await.health, Health::Healthy);
    assert_eq!(c.check_health().await.health, Health::Healthy);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_on_401() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 2).await;
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_rate(&f, 5000, 4000).await;
    let c = f.build();
    assert_eq!(c.check_health().await.health, Health::Healthy);
}

#[tokio::test]
async fn failures_map_to_typed_reasons() {
    let reset = (chrono::Utc::now().timestamp() + 120).to_string();
    let cases: Vec<(ResponseTemplate, Reason)> = vec![
        (ResponseTemplate::new(401), Reason::AuthFailed),
        (ResponseTemplate::new(403), Reason::Forbidden),
        (ResponseTemplate::new(404), Reason::BadResponse),
        (ResponseTemplate::new(500), Reason::ProviderDegraded),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "30"),
            Reason::RateLimited,
        ),
        (
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.as_str()),
            Reason::RateLimited,
        ),
        (
            ResponseTemplate::new(200).set_body_string("{not json"),
            Reason::BadResponse,
        ),
    ];
    for (response, reason) in cases {
        let f = fixture().await;
        // a 401 replaces the token once
        mount_token(&f, chrono::Duration::hours(1), 1..=2).await;
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .respond_with(response)
            .mount(&f.server)
            .await;
        let report = f.build().check_health().await;
        assert_eq!(report.health, Health::Unhealthy, "{report:?}");
        assert_eq!(report.reason, Some(reason), "{report:?}");
        let msg = report.message.unwrap();
        assert!(!msg.contains(TOKEN), "{msg}");
        if reason == Reason::RateLimited {
            let wait = report
                .retry_after
                .expect("rate limited reports carry a pause");
            assert!(
                wait >= Duration::from_secs(29) && wait <= Duration::from_secs(120),
                "{wait:?}"
            );
        }
    }
}

#[tokio::test]
async fn refused_app_credentials_are_auth_failed() {
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .respond_with(ResponseTemplate::new(401))
        // the first 401 drops the cached key and tries once more
        .expect(2)
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
}

#[tokio::test]
async fn low_and_exhausted_quota() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 100).await;
    let report = f.build().check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Degraded, Some(Reason::QuotaLow))
    );
    let quota = report.quota.unwrap();
    assert_eq!((quota.remaining, quota.limit), (100, Some(5000)));
    assert!(quota.reset_at.is_some());
    assert!(report.message.unwrap().contains("100 of 5000"));
    // at the horizon (10 % of 5000), not before
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 500).await;
    let report = f.build().check_health().await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
    assert_eq!(report.quota.unwrap().remaining, 500);
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 0).await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::RateLimited));
    assert!(report.retry_after.unwrap() > Duration::from_secs(500));
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    let f = Fixture::tuned(&Factory, ("github/app-key", KEY), config, |settings| {
        settings.outbound.request_timeout_ms = 300;
    })
    .await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::Timeout), "{report:?}");
}

#[tokio::test]
async fn missing_credentials_are_credential_unavailable() {
    let f = fixture().await;
    let mut spec = f.spec(None);
    let report = Factory.build(&spec, &f.env).unwrap().check_health().await;
    assert_eq!(report.reason, Some(Reason::CredentialUnavailable));
    spec.auth_ref = fixture::secret_ref("github/none");
    let report = Factory.build(&spec, &f.env).unwrap().check_health().await;
    assert_eq!(report.reason, Some(Reason::CredentialUnavailable));
}

#[tokio::test]
async fn repositories_follow_link_pages() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    let page2 = format!(
        "{}/installation/repositories?per_page=100&page=2",
        f.server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"total_count": 2, "repositories": [{"id": 2, "full_name": "o/b"}]}),
        ))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!("<{page2}>; rel=\"next\", <{page2}>; rel=\"last\"").as_str(),
                )
                .set_body_json(
                    json!({"total_count": 2, "repositories": [{"id": 1, "full_name": "o/a"}]}),
                ),
        )
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    assert_eq!(first.resources[0].name, "o/a");
    assert_eq!(first.next_cursor.as_deref(), Some(page2.as_str()));
    let second = c
        .list_resources(first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.resources[0].name, "o/b");
    assert_eq!(second.resources[0].kind, "repository");
    assert_eq!(second.next_cursor, None);
    for foreign in ["http://169.254.169.254/latest", "https://evil.example/x"] {
        assert!(matches!(
            c.list_resources(Some(foreign)).await,
            Err(Error::InvalidCursor)
        ));
    }
}

#[tokio::test]
async fn webhook_is_created_with_the_secret_from_its_authref() {
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/hello/hooks"))
        .and(body_partial_json(json!({
            "name": "web",
            "events": ["push", "pull_request"],
            "config": {"url": "https://ci.example.com/hook", "secret": HOOK_SECRET, "content_type": "json"}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 77, "name": "web", "active": true, "events": ["push", "pull_request"],
            "config": {"url": "https://ci.example.com/hook", "content_type": "json", "insecure_ssl": "0"}
        })))
        .expect(1)
        .mount(&f.server)
        .await;
    let c = f.build();
    let request = WebhookRequest {
        target: "octo/hello".into(),
        url: "https://ci.example.com/hook".into(),
        events: vec!["push".into(), "pull_request".into()],
        secret: fixture::secret_ref("github/hook"),
    };
    let hook = c.setup_webhook(&request).await.unwrap();
    assert_eq!(hook.id, "77");
    assert!(!format!("{hook:?}{request:?}").contains(HOOK_SECRET));
    let bad = WebhookRequest {
        target: "../etc".into(),
        ..request
    };
    assert!(matches!(c.setup_webhook(&bad).await, Err(Error::Config(_))));
}

#[test]
fn config_requires_an_app_and_keeps_wire_names() {
    let ok = json!({"clientId": "Iv1.abc", "installationId": 1});
    assert!(Factory.validate_config(ok.as_object().unwrap()).is_ok());
    let none = json!({"installationId": 1});
    assert_eq!(
        Factory
            .validate_config(none.as_object().unwrap())
            .unwrap_err()
            .field(),
        "config.appId"
    );
    let schema = Factory.config_schema();
    for key in [
        "appId",
        "clientId",
        "installationId",
        "apiBaseUrl",
        "quotaWarningPercent",
    ] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
    assert_eq!(schema["required"], json!(["installationId"]));
}

#[tokio::test]
async fn missing_permissions_are_named() {
    let f = Fixture::new(&Factory, ("github/app-key", KEY), |url| {
        json!({"appId": 12345, "installationId": 42, "apiBaseUrl": url,
               "requiredPermissions": {"contents": "read", "repository_hooks": "write",
                                      "pull_requests": "read"}})
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": TOKEN,
            "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "permissions": {"contents": "write", "repository_hooks": "read", "metadata": "read"}
        })))
        .mount(&f.server)
        .await;
    mount_rate(&f, 5000, 4000).await;
    let report = f.build().check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Degraded, Some(Reason::Forbidden)),
        "{report:?}"
    );
    let message = report.message.unwrap();
    assert!(
        message.ends_with("pull_requests:read, repository_hooks:write"),
        "{message}"
    );
    // what is granted, and more, is fine
    let f = fixture().await;
    mount_token(&f, chrono::Duration::hours(1), 1).await;
    mount_rate(&f, 5000, 4000).await;
    assert_eq!(f.build().check_health().await.health, Health::Healthy);
}

#[tokio::test]
async fn a_suspended_installation_says_since_when() {
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "This installation has been suspended"})),
        )
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/app/installations/42"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 42, "suspended_at": "2026-11-30T08:00:00Z", "suspended_by": {"login": "octo"}
        })))
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Unhealthy, Some(Reason::AuthFailed)),
        "{report:?}"
    );
    assert!(
        report
            .message
            .unwrap()
            .contains("suspended on 2026-11-30 08:00 UTC")
    );
    // a 403 on a installation that is not suspended stays a plain 403
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/app/installations/42"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": 42, "suspended_at": null})),
        )
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(report.reason, Some(Reason::Forbidden), "{report:?}");
}
