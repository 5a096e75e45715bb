use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{basic_auth, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::testing::assert_conformance;
use crate::testing::fixture::{self, Fixture};
use crate::{ConnectorFactory, Health};

const ROBOT: &str = "robot$ci";
const SECRET: &str = "harbor-robot-secret-123";

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"baseUrl": url, "robotAccount": ROBOT});
    Fixture::new(&Factory, ("robot", SECRET), config).await
}

fn health(components: &[(&str, &str)]) -> Value {
    let all_ok = components.iter().all(|(_, s)| *s == "healthy");
    json!({
        "status": if all_ok { "healthy" } else { "unhealthy" },
        "components": components.iter().map(|(n, s)| json!({"name": n, "status": s})).collect::<Vec<_>>()
    })
}

async fn mount(f: &Fixture, projects: ResponseTemplate, health_body: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/api/v2.0/projects"))
        .and(basic_auth(ROBOT, SECRET))
        .respond_with(projects)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/health"))
        .respond_with(health_body)
        .mount(&f.server)
        .await;
}

fn ok_projects() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!([{"project_id": 1, "name": "library"}]))
}

#[tokio::test]
async fn conformance_against_a_healthy_harbor() {
    let f = fixture().await;
    mount(
        &f,
        ok_projects(),
        ResponseTemplate::new(200)
            .set_body_json(health(&[("core", "healthy"), ("database", "healthy")])),
    )
    .await;
    assert_conformance(f.healthy_conformance(vec![SECRET.into()])).await;
}

#[tokio::test]
async fn unhealthy_components_degrade() {
    let f = fixture().await;
    mount(
        &f,
        ok_projects(),
        ResponseTemplate::new(200).set_body_json(health(&[
            ("core", "healthy"),
            ("jobservice", "unhealthy"),
            ("trivy", "unhealthy"),
        ])),
    )
    .await;
    let report = f.build().check_health().await;
    assert_eq!(report.health, Health::Degraded);
    assert_eq!(report.reason, Some(Reason::ProviderDegraded));
    assert_eq!(
        report.message.as_deref(),
        Some("components not healthy: jobservice, trivy")
    );
}

#[tokio::test]
async fn failures_map_to_typed_reasons() {
    for (projects, reason) in [
        (ResponseTemplate::new(401), Reason::AuthFailed),
        (ResponseTemplate::new(403), Reason::Forbidden),
        (ResponseTemplate::new(404), Reason::BadResponse),
        (ResponseTemplate::new(500), Reason::ProviderDegraded),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3"),
            Reason::RateLimited,
        ),
        (
            ResponseTemplate::new(200).set_body_string("[{"),
            Reason::BadResponse,
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(5)),
            Reason::Timeout,
        ),
    ] {
        let f = fixture().await;
        mount(
            &f,
            projects,
            ResponseTemplate::new(200).set_body_json(health(&[])),
        )
        .await;
        let report = f.build().check_health().await;
        assert_eq!(
            (report.health, report.reason),
            (Health::Unhealthy, Some(reason)),
            "{report:?}"
        );
        assert!(!format!("{report:?}").contains(SECRET));
    }
    // a wrong secret: the request carries other credentials than the mock accepts
    let f = fixture().await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/projects"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&f.server)
        .await;
    assert_eq!(
        f.build().check_health().await.reason,
        Some(Reason::AuthFailed)
    );
}

#[tokio::test]
async fn projects_then_repositories_page_by_page() {
    let f = fixture().await;
    let full: Vec<Value> = (0..PAGE_SIZE)
        .map(|i| json!({"project_id": i, "name": format!("p{i}")}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/v2.0/projects"))
        .and(query_param("page", "1"))
        .and(query_param("page_size", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(full))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/projects"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([{"project_id": 500, "name": "last"}])),
        )
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/repositories"))
        .and(query_param("page", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    "</api/v2.0/repositories?page=2&page_size=100>; rel=\"next\"",
                )
                .set_body_json(json!([{"id": 9, "name": "library/nginx"}])),
        )
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/repositories"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([{"id": 10, "name": "library/redis"}])),
        )
        .mount(&f.server)
        .await;
    let c = f.build();
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = c.list_resources(cursor.as_deref()).await.unwrap();
        seen.extend(page.resources.into_iter().map(|r| (r.kind, r.name)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 103);
    assert_eq!(seen[100], ("project", "last".to_owned()));
    assert_eq!(seen[101], ("image_repository", "library/nginx".to_owned()));
    assert_eq!(seen[102], ("image_repository", "library/redis".to_owned()));
    for bad in ["x", "projects:0", "repositories:-1", "users:1"] {
        assert!(
            matches!(c.list_resources(Some(bad)).await, Err(Error::InvalidCursor)),
            "{bad}"
        );
    }
}

#[test]
fn robot_and_authref_come_together() {
    let spec = |config, auth_ref| fixture::spec(&Factory, config, auth_ref);
    let env = ConnectorEnv::default();
    let url = "https://harbor.example.com";
    assert!(
        Factory
            .build(&spec(json!({"baseUrl": url}), None), &env)
            .is_ok()
    );
    assert!(
        Factory
            .build(
                &spec(json!({"baseUrl": url}), fixture::secret_ref("robot")),
                &env
            )
            .is_err()
    );
    assert!(
        Factory
            .build(
                &spec(json!({"baseUrl": url, "robotAccount": ROBOT}), None),
                &env
            )
            .is_err()
    );
    let schema = Factory.config_schema();
    for key in ["baseUrl", "robotAccount"] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
}

#[tokio::test]
async fn robot_expiry_warns_at_the_horizon_and_not_before() {
    for (days, expected) in [
        (Some(30), Health::Healthy),
        (Some(15), Health::Healthy),
        (Some(13), Health::Degraded),
        (None, Health::Healthy),
    ] {
        let f = fixture().await;
        mount(
            &f,
            ok_projects(),
            ResponseTemplate::new(200).set_body_json(health(&[("core", "healthy")])),
        )
        .await;
        let at = days.map(|d| chrono::Utc::now().timestamp() + d * 86_400);
        Mock::given(method("GET"))
            .and(path("/api/v2.0/robots"))
            .and(query_param("q", format!("name={ROBOT}").as_str()))
            .and(basic_auth(ROBOT, SECRET))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 7, "name": "other", "expires_at": 1},
                {"id": 8, "name": "ci", "expires_at": at.unwrap_or(-1), "level": "system"}
            ])))
            .expect(1)
            .mount(&f.server)
            .await;
        let c = f.build();
        let report = c.check_health().await;
        assert_eq!(report.health, expected, "{days:?}: {report:?}");
        assert_eq!(
            report.credential_expires_at.map(|t| t.timestamp()),
            at,
            "{days:?}"
        );
        if expected == Health::Degraded {
            assert_eq!(report.reason, Some(Reason::CredentialExpiring));
            let day = report
                .credential_expires_at
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            assert!(report.message.unwrap().contains(&day));
        }
        // read once an hour, not on every check (`expect(1)`)
        c.check_health().await;
    }
    // a robot that may not read robot accounts tells nothing, and stays healthy
    let f = fixture().await;
    mount(
        &f,
        ok_projects(),
        ResponseTemplate::new(200).set_body_json(health(&[("core", "healthy")])),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/robots"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&f.server)
        .await;
    let report = f.build().check_health().await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
    assert_eq!(report.credential_expires_at, None);
}
