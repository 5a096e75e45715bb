//! A secret's own expiry, told by a real OpenBao (`custom_metadata.expires_at`), judged on
//! the checks of a real registry (docker-registry with htpasswd) whose password it holds:
//! `credential_expiring` at the horizon and not before, and never across tenants.

mod common;

use connectors::{ConnectorFactory, Health, IntegrationSpec, Reason};
use serde_json::json;

struct Bao {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Bao {
    async fn post(&self, path: &str, body: serde_json::Value) {
        let status = self
            .http
            .post(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .expect("OpenBao answers")
            .status();
        assert!(status.is_success(), "{path}: {status}");
    }
}

fn spec(tenant: &str, registry: &str, user: &str, auth_ref: &str) -> IntegrationSpec {
    IntegrationSpec {
        id: format!("{tenant}-registry"),
        tenant: tenant.into(),
        provider_type: "oci_registry".into(),
        config: json!({"baseUrl": registry, "username": user})
            .as_object()
            .unwrap()
            .clone(),
        auth_ref: Some(auth_ref.parse().unwrap()),
    }
}

#[tokio::test]
async fn a_vault_secret_expiry_warns_at_the_horizon_and_not_before() {
    let (Some(addr), Some(registry)) = (
        common::peer(common::OPENBAO_ADDR, "secret expiry against OpenBao"),
        common::peer(
            common::REGISTRY_URL,
            "secret expiry against docker-registry",
        ),
    ) else {
        return;
    };
    let token = common::peer(common::OPENBAO_TOKEN, "the OpenBao token").unwrap();
    let user = common::peer(common::REGISTRY_USER, "the registry user").unwrap();
    let password = common::peer(common::REGISTRY_PASSWORD, "the registry password").unwrap();
    connectors::testing::install_crypto();
    let bao = Bao {
        addr: addr.clone(),
        token: token.clone(),
        http: reqwest::Client::new(),
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let now = chrono::Utc::now();
    for days in [15, 13] {
        let path = format!("tenants/t/expiry-{run}/registry-{days}d");
        bao.post(
            &format!("secret/data/{path}"),
            json!({"data": {"password": password}}),
        )
        .await;
        let at = now + chrono::Duration::days(days);
        bao.post(
            &format!("secret/metadata/{path}"),
            json!({"custom_metadata": {"expires_at": at.to_rfc3339()}}),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bao-token"), &token).unwrap();
    let env = connectors::testing::loopback_env_with(dir.path(), |s| {
        s.secrets.vault_addr = Some(addr.clone());
        s.secrets.vault_token_file = Some(dir.path().join("bao-token"));
    });
    let factory = connectors::oci_registry::Factory;
    let reference = |days: i64| {
        format!("authref://vault/secret/tenants/t/expiry-{run}/registry-{days}d#password")
    };

    // 15 days left: past the 14-day horizon; healthy, the date reported
    let c = factory
        .build(&spec("t", &registry, &user, &reference(15)), &env)
        .unwrap();
    let report = c.check_health().await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
    let told = report.credential_expires_at.expect("the secret's expiry");
    assert_eq!(
        told.timestamp(),
        (now + chrono::Duration::days(15)).timestamp()
    );

    // 13 days left: credential_expiring, naming the reference and the date
    let c = factory
        .build(&spec("t", &registry, &user, &reference(13)), &env)
        .unwrap();
    let report = c.check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Degraded, Some(Reason::CredentialExpiring)),
        "{report:?}"
    );
    let message = report.message.unwrap();
    let day = (now + chrono::Duration::days(13))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        message.contains(&day) && message.contains(&reference(13)),
        "{message}"
    );
    assert!(!message.contains(&password));

    // Another tenant naming the same reference gets neither the password nor its expiry.
    let c = factory
        .build(&spec("m", &registry, &user, &reference(13)), &env)
        .unwrap();
    let report = c.check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert_eq!(report.credential_expires_at, None);
}
