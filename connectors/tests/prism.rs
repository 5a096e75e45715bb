//! Happy paths against the vendors' own API descriptions, served by prism on loopback.
//!
//! Prism answers with the vendor's examples (or schema placeholders), so these tests prove
//! that the connectors send what the descriptions accept and parse what they promise; the
//! failure paths are scripted with wiremock beside each connector.

mod common;

use connectors::{
    ConnectorFactory, Health, IntegrationSpec, Reason, SharedConnector, WebhookRequest,
};
use serde_json::{Value, json};

const GITHUB_KEY: &str = include_str!("fixtures/github-app-test-key.pem");

fn build(
    factory: &dyn ConnectorFactory,
    config: Value,
    auth_ref: Option<&str>,
    env: &connectors::ConnectorEnv,
) -> SharedConnector {
    let spec = IntegrationSpec {
        id: "prism".into(),
        tenant: "t".into(),
        provider_type: factory.provider_type().into(),
        config: config.as_object().unwrap().clone(),
        auth_ref: auth_ref.map(|r| r.parse().unwrap()),
    };
    factory
        .validate_config(&spec.config)
        .expect("the config is valid");
    factory.build(&spec, env).unwrap()
}

#[tokio::test]
async fn github_app_against_githubs_description() {
    let Some(url) = common::peer(common::PRISM_GITHUB, "GitHub's description") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    std::fs::write(dir.path().join("tenants/t/app-key"), GITHUB_KEY).unwrap();
    std::fs::write(
        dir.path().join("tenants/t/hook-secret"),
        "hook-secret-value",
    )
    .unwrap();
    let env = common::env(dir.path());
    let c = build(
        &connectors::github_app::Factory,
        json!({"appId": 1, "installationId": 42, "apiBaseUrl": url}),
        Some("authref://file/tenants/t/app-key"),
        &env,
    );
    // JWT → installation token → GET /rate_limit (the example has 4999 of 5000 left)
    let report = c.check_health().await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
    // the window is reported as the structured quota
    let quota = report.quota.expect("the core window");
    assert_eq!((quota.remaining, quota.limit), (4999, Some(5000)));
    assert_eq!(c.test_connection().await.health, Health::Healthy);
    let page = c.list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "octocat/Hello-World");
    assert_eq!(page.resources[0].kind, "repository");
    // The example's Link points at api.github.com, not at this integration: it is handed
    // out, but refused as a cursor.
    let next = page.next_cursor.expect("the example has a next link");
    assert!(matches!(
        c.list_resources(Some(&next)).await,
        Err(connectors::Error::InvalidCursor)
    ));
    let hook = c
        .setup_webhook(&WebhookRequest {
            target: "octocat/Hello-World".into(),
            url: "https://ci.example.com/hook".into(),
            events: vec!["push".into()],
            secret: Some("authref://file/tenants/t/hook-secret".parse().unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(hook.id, "12345678");
}

#[tokio::test]
async fn gitlab_against_gitlabs_description() {
    let Some(url) = common::peer(common::PRISM_GITLAB, "GitLab's description") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    std::fs::write(dir.path().join("tenants/t/token"), "glpat-prism").unwrap();
    let env = common::env(dir.path());
    let c = build(
        &connectors::gitlab::Factory,
        json!({"baseUrl": url}),
        Some("authref://file/tenants/t/token"),
        &env,
    );
    // GitLab's own example token is revoked (and expired in 2020): the connector must read
    // that from the description's date-time `expires_at` and say so.
    let report = c.check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Unhealthy, Some(Reason::AuthFailed)),
        "{report:?}"
    );
    assert_eq!(
        report.message.as_deref(),
        Some("the access token is revoked")
    );
    let page = c.list_resources(None).await.unwrap();
    assert_eq!(page.resources[0].name, "namespace1/project1");
    assert_eq!(page.resources[0].kind, "project");
    // Without an AuthRef nothing is sent.
    let anonymous = build(
        &connectors::gitlab::Factory,
        json!({"baseUrl": url}),
        None,
        &env,
    );
    assert_eq!(
        anonymous.check_health().await.reason,
        Some(Reason::CredentialUnavailable)
    );
}

#[tokio::test]
async fn harbor_against_harbors_description() {
    let Some(url) = common::peer(common::PRISM_HARBOR, "Harbor's description") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    std::fs::write(dir.path().join("tenants/t/robot"), "robot-secret").unwrap();
    let env = common::env(dir.path());
    let c = build(
        &connectors::harbor::Factory,
        json!({"baseUrl": url, "robotAccount": "robot$ci"}),
        Some("authref://file/tenants/t/robot"),
        &env,
    );
    // The description has no examples: prism's placeholder component status "string" is
    // not "healthy", so the honest answer is degraded, naming the component.
    let report = c.check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Degraded, Some(Reason::ProviderDegraded)),
        "{report:?}"
    );
    let projects = c.list_resources(None).await.unwrap();
    assert_eq!(projects.resources[0].kind, "project");
    assert_eq!(projects.next_cursor.as_deref(), Some("repositories:1"));
    let repositories = c
        .list_resources(projects.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(repositories.resources[0].kind, "image_repository");
    assert_eq!(repositories.next_cursor, None);
}
