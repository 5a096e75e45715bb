//! Tenant namespaces against a real OpenBao: the hub's own check, each tenant's AppRole
//! login with the templated policy from `docs/security.md` (so OpenBao enforces the same
//! boundary), and `custom_metadata.allowed_hosts` as the secret's binding.
//!
//! A test binary of its own: `vault.rs` seals the server for a moment, and test binaries run
//! one after another.

mod common;

use connectors::authref::AuthRef;
use connectors::secrets::{SecretError, SecretResolver, TenantRef};
use connectors::settings::{SecretsSettings, TenantSecretsSettings, VaultAuth};
use serde_json::{Value, json};

/// The policy of `docs/security.md`, with the AppRole mount's accessor filled in.
fn tenant_policy(accessor: &str) -> String {
    format!(
        "path \"secret/data/tenants/{{{{identity.entity.aliases.{accessor}.metadata.role_name}}}}/*\" {{\n  \
           capabilities = [\"read\"]\n}}\n"
    )
}

struct Bao {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Bao {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("OpenBao answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn role_id(&self, tenant: &str) -> String {
        let path = format!("auth/approle/role/{tenant}/role-id");
        let role = self.call(reqwest::Method::GET, &path, None).await;
        role["data"]["role_id"].as_str().unwrap().to_owned()
    }

    async fn read_as(&self, token: &str, path: &str) -> reqwest::StatusCode {
        self.http
            .get(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token)
            .send()
            .await
            .expect("OpenBao answers")
            .status()
    }
}

fn r(s: &str) -> AuthRef {
    s.parse().unwrap()
}

#[tokio::test]
async fn each_tenant_reads_its_own_space_with_its_own_approle() {
    let Some(addr) = common::peer(common::OPENBAO_ADDR, "tenant namespaces against OpenBao") else {
        return;
    };
    let token = common::peer(common::OPENBAO_TOKEN, "tenant namespaces").expect("token");
    connectors::testing::install_crypto();
    let bao = Bao {
        addr: addr.clone(),
        token,
        http: reqwest::Client::new(),
    };
    let post = reqwest::Method::POST;

    // AppRole, one role per tenant named after it, one templated policy for all.
    let mounts = bao.call(reqwest::Method::GET, "sys/auth", None).await;
    let mounted = mounts
        .get("data")
        .unwrap_or(&mounts)
        .get("approle/")
        .is_some();
    if !mounted {
        bao.call(
            post.clone(),
            "sys/auth/approle",
            Some(json!({"type": "approle"})),
        )
        .await;
    }
    let mounts = bao.call(reqwest::Method::GET, "sys/auth", None).await;
    let accessor = mounts.get("data").unwrap_or(&mounts)["approle/"]["accessor"]
        .as_str()
        .expect("the AppRole mount's accessor")
        .to_owned();
    bao.call(
        reqwest::Method::PUT,
        "sys/policies/acl/stella-tenant",
        Some(json!({"policy": tenant_policy(&accessor)})),
    )
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let mut tenants = std::collections::BTreeMap::new();
    for tenant in ["acme", "beta"] {
        bao.call(
            post.clone(),
            &format!("auth/approle/role/{tenant}"),
            Some(json!({"token_policies": ["stella-tenant"], "token_ttl": "5m"})),
        )
        .await;
        let role_id = bao.role_id(tenant).await;
        let secret_id = bao
            .call(
                post.clone(),
                &format!("auth/approle/role/{tenant}/secret-id"),
                None,
            )
            .await;
        std::fs::create_dir_all(secrets.path().join("operator")).unwrap();
        std::fs::write(
            secrets.path().join(format!("operator/{tenant}-secret-id")),
            secret_id["data"]["secret_id"].as_str().unwrap(),
        )
        .unwrap();
        bao.call(
            post.clone(),
            &format!("secret/data/tenants/{tenant}/gitlab"),
            Some(json!({"data": {"token": format!("{tenant}-gitlab-token")}})),
        )
        .await;
        tenants.insert(
            tenant.to_owned(),
            TenantSecretsSettings {
                vault_auth: Some(VaultAuth::Approle {
                    mount: "approle".into(),
                    role_id,
                    secret_id: r(&format!("authref://file/operator/{tenant}-secret-id")),
                }),
                ..Default::default()
            },
        );
    }
    // A folder the hub lets acme name (an override) but the policy does not cover: OpenBao
    // must refuse it on its own.
    tenants.get_mut("acme").unwrap().vault_prefix = Some("teams/acme".into());
    bao.call(
        post.clone(),
        "secret/data/teams/acme/gitlab",
        Some(json!({"data": {"token": "outside-the-policy"}})),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/data/tenants/acme/bound",
        Some(json!({"data": {"token": "bound-token"}})),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/metadata/tenants/acme/bound",
        Some(json!({"custom_metadata": {"allowed_hosts": "gitlab.example.com, *.corp.example"}})),
    )
    .await;

    // The daemon's own token is not configured at all: every read uses a tenant's login.
    let resolver = SecretResolver::new(&SecretsSettings {
        vault_addr: Some(addr.clone()),
        secrets_dir: Some(secrets.path().to_owned()),
        tenants,
        ..SecretsSettings::default()
    })
    .unwrap();
    let acme = |s: &str| TenantRef::new("acme", r(s));
    let beta = |s: &str| TenantRef::new("beta", r(s));

    // acme's override moved its hub namespace to teams/acme: the hub allows it, the policy
    // refuses it.
    let denied = resolver
        .resolve(&acme("authref://vault/secret/teams/acme/gitlab#token"))
        .await
        .unwrap_err();
    assert!(matches!(denied, SecretError::Denied { .. }), "{denied}");
    let own = resolver
        .resolve(&beta("authref://vault/secret/tenants/beta/gitlab#token"))
        .await
        .unwrap();
    assert_eq!(own.secret().expose(), "beta-gitlab-token");
    // beta names acme's secret: refused by the hub before OpenBao is asked.
    let outside = resolver
        .resolve(&beta("authref://vault/secret/tenants/acme/gitlab#token"))
        .await
        .unwrap_err();
    assert!(
        matches!(outside, SecretError::OutsideNamespace { .. }),
        "{outside}"
    );
    assert!(!outside.to_string().contains("acme-gitlab-token"));

    // And OpenBao refuses it too: beta's own login cannot read acme's folder.
    let login = |tenant: &'static str| {
        let bao = &bao;
        let secrets = secrets.path().to_owned();
        async move {
            let role_id = bao.role_id(tenant).await;
            let secret_id =
                std::fs::read_to_string(secrets.join(format!("operator/{tenant}-secret-id")))
                    .unwrap();
            let answer: Value = bao
                .http
                .post(format!("{}/v1/auth/approle/login", bao.addr))
                .json(&json!({"role_id": role_id, "secret_id": secret_id}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["auth"]["client_token"].as_str().unwrap().to_owned()
        }
    };
    let beta_token = login("beta").await;
    assert_eq!(
        bao.read_as(&beta_token, "secret/data/tenants/acme/gitlab")
            .await,
        reqwest::StatusCode::FORBIDDEN
    );
    assert_eq!(
        bao.read_as(&beta_token, "secret/data/tenants/beta/gitlab")
            .await,
        reqwest::StatusCode::OK
    );

    // The binding travels with the secret.
    let mut settings = SecretsSettings {
        vault_addr: Some(addr.clone()),
        secrets_dir: Some(secrets.path().to_owned()),
        ..SecretsSettings::default()
    };
    settings.tenants.insert(
        "acme".into(),
        TenantSecretsSettings {
            vault_auth: Some(VaultAuth::Approle {
                mount: "approle".into(),
                role_id: bao.role_id("acme").await,
                secret_id: r("authref://file/operator/acme-secret-id"),
            }),
            ..Default::default()
        },
    );
    let resolver = SecretResolver::new(&settings).unwrap();
    let resolved = resolver
        .resolve(&acme("authref://vault/secret/tenants/acme/bound#token"))
        .await
        .unwrap();
    let reference = acme("authref://vault/secret/tenants/acme/bound#token");
    let gitlab = url::Url::parse("https://gitlab.example.com/api/v4").unwrap();
    let corp = url::Url::parse("https://git.corp.example/").unwrap();
    let attacker = url::Url::parse("https://attacker.test/collect").unwrap();
    assert_eq!(
        resolved.for_url(&reference, &gitlab).unwrap().expose(),
        "bound-token"
    );
    assert!(resolved.for_url(&reference, &corp).is_ok());
    let refused = resolved.for_url(&reference, &attacker).unwrap_err();
    assert!(
        matches!(refused, SecretError::HostNotAllowed { .. }),
        "{refused}"
    );
    assert!(!refused.to_string().contains("bound-token"));
    let own = resolver
        .resolve(&acme("authref://vault/secret/tenants/acme/gitlab#token"))
        .await
        .unwrap();
    assert_eq!(own.secret().expose(), "acme-gitlab-token");
}
