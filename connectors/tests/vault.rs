//! AuthRef resolution against a real OpenBao (Vault-compatible) dev server.
//!
//! One test walks the scenarios in order, because the last one seals the server (and unseals
//! it again with the key the script exported).

mod common;

use std::time::Duration;

use connectors::authref::AuthRef;
use connectors::secrets::{SecretError, SecretResolver, TenantRef};
use connectors::settings::SecretsSettings;
use connectors::{ConnectorFactory, IntegrationSpec, Reason};
use serde_json::json;

struct Bao {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Bao {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::StatusCode {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("OpenBao answers").status()
    }

    async fn put_secret(&self, path: &str, data: serde_json::Value) {
        let status = self
            .call(
                reqwest::Method::POST,
                &format!("secret/data/{path}"),
                Some(json!({"data": data})),
            )
            .await;
        assert!(status.is_success(), "writing {path}: {status}");
    }
}

fn r(s: &str) -> AuthRef {
    s.parse().unwrap()
}

/// A reference of tenant `t`, whose default namespace is `secret/tenants/t/`.
fn t(s: &str) -> TenantRef {
    TenantRef::new("t", r(s))
}

fn resolver(addr: &str, token_file: &std::path::Path, ttl: u64) -> SecretResolver {
    SecretResolver::new(&SecretsSettings {
        vault_addr: Some(addr.to_owned()),
        vault_token_file: Some(token_file.to_owned()),
        cache_ttl_secs: ttl,
        ..SecretsSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn vault_kv2_resolution_and_its_failures() {
    let Some(addr) = common::peer(common::OPENBAO_ADDR, "Vault resolution against OpenBao") else {
        return;
    };
    let token = common::peer(common::OPENBAO_TOKEN, "Vault resolution").expect("token with addr");
    connectors::testing::install_crypto();
    let bao = Bao {
        addr: addr.clone(),
        token: token.clone(),
        http: reqwest::Client::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("token");
    let bad = dir.path().join("bad-token");
    std::fs::write(&good, format!("{token}\n")).unwrap();
    std::fs::write(&bad, "not-a-token").unwrap();

    // nested paths and #key
    bao.put_secret(
        "tenants/t/ci/deep/gitlab",
        json!({"token": "glpat-from-bao", "user": "bot"}),
    )
    .await;
    bao.put_secret("tenants/t/ci/single", json!({"password": "only-field"}))
        .await;
    let vault = resolver(&addr, &good, 300);
    assert_eq!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/deep/gitlab#token"))
            .await
            .unwrap()
            .secret()
            .expose(),
        "glpat-from-bao"
    );
    assert_eq!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/deep/gitlab#user"))
            .await
            .unwrap()
            .secret()
            .expose(),
        "bot"
    );
    assert_eq!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/single"))
            .await
            .unwrap()
            .secret()
            .expose(),
        "only-field"
    );
    assert!(matches!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/deep/gitlab"))
            .await,
        Err(SecretError::Malformed { .. })
    ));
    assert!(matches!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/deep/gitlab#nope"))
            .await,
        Err(SecretError::NotFound { .. })
    ));

    // missing secret (404)
    assert!(matches!(
        vault
            .resolve(&t("authref://vault/secret/tenants/t/ci/missing#token"))
            .await,
        Err(SecretError::NotFound { .. })
    ));

    // bad token (403)
    let refused = resolver(&addr, &bad, 300)
        .resolve(&t("authref://vault/secret/tenants/t/ci/deep/gitlab#token"))
        .await
        .unwrap_err();
    assert!(matches!(refused, SecretError::Denied { .. }), "{refused}");
    assert!(!refused.to_string().contains("not-a-token"));

    // the cache serves until invalidated (as a provider's 401 does)
    bao.put_secret(
        "tenants/t/ci/deep/gitlab",
        json!({"token": "glpat-rotated", "user": "bot"}),
    )
    .await;
    let reference = t("authref://vault/secret/tenants/t/ci/deep/gitlab#token");
    assert_eq!(
        vault.resolve(&reference).await.unwrap().secret().expose(),
        "glpat-from-bao"
    );
    vault.invalidate(&reference).await;
    assert_eq!(
        vault.resolve(&reference).await.unwrap().secret().expose(),
        "glpat-rotated"
    );

    // rate limited (429, with Retry-After) through a quota on one secret's path
    bao.put_secret("tenants/t/limited/app", json!({"v": "x"}))
        .await;
    let headers_on = bao
        .call(
            reqwest::Method::POST,
            "sys/quotas/config",
            Some(json!({"enable_rate_limit_response_headers": true})),
        )
        .await;
    assert!(headers_on.is_success(), "quota config: {headers_on}");
    let status = bao
        .call(
            reqwest::Method::POST,
            "sys/quotas/rate-limit/connectors-test",
            Some(
                json!({"path": "secret/data/tenants/t/limited/app", "rate": 1, "interval": "60s"}),
            ),
        )
        .await;
    assert!(status.is_success(), "quota: {status}");
    let uncached = resolver(&addr, &good, 0);
    let mut limited = None;
    for _ in 0..5 {
        if let Err(e) = uncached
            .resolve(&t("authref://vault/secret/tenants/t/limited/app"))
            .await
        {
            limited = Some(e);
            break;
        }
    }
    let limited = limited.expect("the quota refuses within five reads");
    assert!(
        matches!(limited, SecretError::RateLimited { .. }),
        "{limited}"
    );
    let wait = limited.retry_after().expect("OpenBao sends Retry-After");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    bao.call(
        reqwest::Method::DELETE,
        "sys/quotas/rate-limit/connectors-test",
        None,
    )
    .await;

    // a connector whose secret is unavailable reports credential_unavailable, not a crash
    let mut settings = connectors::testing::loopback_settings();
    settings.secrets.vault_addr = Some(addr.clone());
    settings.secrets.vault_token_file = Some(good.clone());
    let env = connectors::ConnectorEnv::new(&settings).unwrap();
    let spec = IntegrationSpec {
        id: "gl".into(),
        tenant: "t".into(),
        provider_type: "gitlab".into(),
        config: json!({"baseUrl": "https://gitlab.example.com"})
            .as_object()
            .unwrap()
            .clone(),
        auth_ref: Some(r("authref://vault/secret/tenants/t/ci/missing#token")),
    };
    let report = connectors::gitlab::Factory
        .build(&spec, &env)
        .unwrap()
        .check_health()
        .await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );

    // sealed (503), last: it stops the server answering reads until unsealed
    let Some(unseal_key) = common::peer(common::OPENBAO_UNSEAL_KEY, "the sealed scenario") else {
        return;
    };
    assert!(
        bao.call(reqwest::Method::PUT, "sys/seal", None)
            .await
            .is_success()
    );
    let sealed = uncached.resolve(&reference).await.unwrap_err();
    assert!(matches!(sealed, SecretError::Sealed { .. }), "{sealed}");
    let report = connectors::gitlab::Factory
        .build(
            &IntegrationSpec {
                auth_ref: Some(reference.reference().clone()),
                ..spec
            },
            &env,
        )
        .unwrap()
        .check_health()
        .await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert!(report.message.unwrap().contains("sealed"));
    let unsealed = bao
        .http
        .put(format!("{addr}/v1/sys/unseal"))
        .json(&json!({"key": unseal_key}))
        .send()
        .await
        .unwrap();
    assert!(unsealed.status().is_success());
    // back in service within a bounded wait
    let mut back = false;
    for _ in 0..50 {
        if uncached.resolve(&reference).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "OpenBao serves reads again after unsealing");
}

#[tokio::test]
async fn an_unreachable_vault_is_credential_unavailable() {
    connectors::testing::install_crypto();
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t").unwrap();
    let vault = resolver(
        &format!("http://127.0.0.1:{port}"),
        &dir.path().join("token"),
        0,
    );
    let e = vault
        .resolve(&t("authref://vault/secret/tenants/t/x#y"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecretError::Unavailable { .. }), "{e}");
}
