//! The ECR connector against moto's server mode, a real implementation of the ECR API that
//! verifies SigV4 signatures against the access keys it issued (`scripts/connector-peers`
//! starts it and makes the key and the repositories).

mod common;

use connectors::{ConnectorFactory, Health, HealthReport, IntegrationSpec, Reason};
use serde_json::json;

struct Moto {
    url: String,
    key_id: String,
    secret: String,
    repositories: Vec<String>,
}

fn moto() -> Option<Moto> {
    let url = common::peer(common::MOTO_URL, "ECR against moto")?;
    Some(Moto {
        url,
        key_id: std::env::var(common::MOTO_ACCESS_KEY_ID).unwrap(),
        secret: std::env::var(common::MOTO_SECRET_ACCESS_KEY).unwrap(),
        repositories: std::env::var(common::MOTO_REPOSITORIES)
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect(),
    })
}

/// An ECR integration of tenant `t` whose AuthRef is a file holding `key_id` and `secret`.
fn integration(
    moto: &Moto,
    dir: &std::path::Path,
    id: &str,
    key_id: &str,
    secret: &str,
) -> IntegrationSpec {
    let file = dir.join("tenants/t").join(id);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        json!({"access_key_id": key_id, "secret_access_key": secret}).to_string(),
    )
    .unwrap();
    IntegrationSpec {
        id: id.into(),
        tenant: "t".into(),
        provider_type: "ecr".into(),
        config: json!({"region": "us-east-1", "endpointUrl": moto.url, "pageSize": 2})
            .as_object()
            .unwrap()
            .clone(),
        auth_ref: Some(format!("authref://file/tenants/t/{id}").parse().unwrap()),
    }
}

#[tokio::test]
async fn ecr_checks_and_lists_repositories_on_moto() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = common::env(dir.path());
    let spec = integration(&moto, dir.path(), "ecr-ok", &moto.key_id, &moto.secret);
    let connector = connectors::cloud_registry::ecr::Factory
        .build(&spec, &env)
        .unwrap();
    assert_eq!(connector.check_health().await, HealthReport::healthy());
    // moto does not paginate DescribeRepositories, so one page holds them all.
    let page = connector.list_resources(None).await.unwrap();
    let mut names: Vec<String> = page.resources.iter().map(|r| r.name.clone()).collect();
    names.sort();
    let mut expected = moto.repositories.clone();
    expected.sort();
    assert_eq!(names, expected);
    assert!(
        page.resources
            .iter()
            .all(|r| r.id.starts_with("arn:aws:ecr:us-east-1:") && r.kind == "image_repository"),
        "{page:?}"
    );
}

#[tokio::test]
async fn moto_refuses_a_wrong_secret_as_auth_failed() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = common::env(dir.path());
    let wrong = "wrong-secret-access-key-000";
    let spec = integration(&moto, dir.path(), "ecr-wrong", &moto.key_id, wrong);
    let report = connectors::cloud_registry::ecr::Factory
        .build(&spec, &env)
        .unwrap()
        .check_health()
        .await;
    assert_eq!(report.health, Health::Unhealthy);
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
    assert!(!format!("{report:?}").contains(wrong));
    // A key moto never issued.
    let spec = integration(
        &moto,
        dir.path(),
        "ecr-unknown",
        "AKIANOSUCHKEY0000000",
        wrong,
    );
    let report = connectors::cloud_registry::ecr::Factory
        .build(&spec, &env)
        .unwrap()
        .check_health()
        .await;
    assert_eq!(report.reason, Some(Reason::AuthFailed), "{report:?}");
}
