//! Tenant-scoped credentials, from the attacker's side: tenant B points integrations, webhooks
//! and webhook subscriptions at a server it controls (a loopback receiver) and names tenant A's
//! secrets, or the daemon's own, in every backend. Nothing of A's or the daemon's may reach
//! the receiver, by any path: create, update, `?verify=true`, an on-demand check, a scheduled
//! check, a resources listing, a provider webhook, a subscription's signing secret, and rows
//! written before namespaces existed.
//!
//! Each attack has a control: the same path with A's own reference does send A's secret to the
//! receiver, so a test that sees nothing has not simply looked in the wrong place.
//!
//! Vault cases run against the real OpenBao of `scripts/connector-peers`
//! (`CONNECTORS_OPENBAO_ADDR`, `CONNECTORS_OPENBAO_TOKEN`); under CI they are required.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon::config::Config;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};
use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};
use serde_json::{Value, json};

use crate::context::{ADMIN_A, TestContext, WRITER_A, WRITER_B};

const A_FILE_SECRET: &str = "glpat-tenant-a-file-secret";
const A_VAULT_SECRET: &str = "glpat-tenant-a-vault-secret";
const B_FILE_SECRET: &str = "glpat-tenant-b-own-secret";
const OPERATOR_FILE_SECRET: &str = "operator-root-file-secret";
const A_BOUND_SECRET: &str = "glpat-tenant-a-bound-secret";

// === the attacker's receiver ===

/// A server on loopback that records everything it is sent, standing for a server tenant B
/// controls.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<String>>>,
}

#[handler]
async fn record(req: &Request, body: Vec<u8>, got: Data<&Arc<Mutex<Vec<String>>>>) -> Response {
    let mut seen = format!("{} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        seen.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    seen.push_str(&String::from_utf8_lossy(&body));
    got.lock().unwrap().push(seen);
    // Whatever a provider would say: the secret has left by now if it was sent.
    Response::builder()
        .status(poem::http::StatusCode::OK)
        .content_type("application/json")
        .body(r#"{"active": true, "revoked": false, "expires_at": null}"#)
}

impl Receiver {
    async fn start() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = Route::new()
            .at("/*path", record)
            .at("/", record)
            .data(got.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.got.lock().unwrap().clear();
    }

    /// Fails if anything the receiver got holds one of `secrets`.
    fn assert_never_saw(&self, secrets: &[&str]) {
        for request in self.requests() {
            for secret in secrets {
                assert!(
                    !request.contains(secret),
                    "the receiver got a secret: {request}"
                );
            }
        }
    }
}

// === set-up ===

/// The real OpenBao, when the peers script started one.
struct Bao {
    addr: String,
    token: String,
}

fn openbao() -> Option<Bao> {
    let addr = std::env::var("CONNECTORS_OPENBAO_ADDR")
        .ok()
        .filter(|a| !a.is_empty());
    let token = std::env::var("CONNECTORS_OPENBAO_TOKEN").ok();
    match (addr, token) {
        (Some(addr), Some(token)) => Some(Bao { addr, token }),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CONNECTORS_OPENBAO_ADDR is not set: under CI the tenant-namespace tests need the \
             real OpenBao; run them through scripts/connector-peers"
        ),
        _ => {
            eprintln!("SKIPPED (vault cases): CONNECTORS_OPENBAO_ADDR is not set");
            None
        }
    }
}

impl Bao {
    async fn put(&self, path: &str, data: Value) {
        let status = reqwest::Client::new()
            .post(format!("{}/v1/secret/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&json!({"data": data}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "writing {path}: {status}");
    }
}

/// Secret files: A's and B's folders, a file of the operator's at the root, a link in B's
/// folder to A's file, and a secret of A's bound to another host.
fn secret_files(dir: &std::path::Path) {
    let a = dir.join("tenants/tenant-a");
    let b = dir.join("tenants/tenant-b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("gitlab"), A_FILE_SECRET).unwrap();
    std::fs::write(a.join("bound"), A_BOUND_SECRET).unwrap();
    std::fs::write(
        a.join("bound.meta.json"),
        r#"{"allowed_hosts": ["gitlab.example.com"]}"#,
    )
    .unwrap();
    std::fs::write(b.join("gitlab"), B_FILE_SECRET).unwrap();
    std::fs::write(dir.join("operator"), OPERATOR_FILE_SECRET).unwrap();
    std::os::unix::fs::symlink(a.join("gitlab"), b.join("link-to-a")).unwrap();
}

fn configure(config: &mut Config, secrets: &std::path::Path, bao: Option<&Bao>) {
    config.health.interval_seconds = 1;
    config.health.backoff_min_seconds = 1;
    config.health.backoff_max_seconds = 1;
    config.health.writer_flush_ms = 20;
    config.connectors.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
    config.connectors.secrets.secrets_dir = Some(secrets.to_owned());
    config.connectors.secrets.cache_ttl_secs = 0;
    config.connectors.secrets.tenants.insert(
        "tenant-a".into(),
        ::connectors::settings::TenantSecretsSettings {
            env: vec!["TENANT_A_*".into()],
            ..Default::default()
        },
    );
    config.events.webhooks.backoff_min_ms = 50;
    config.events.webhooks.backoff_max_ms = 200;
    config.events.webhooks.poll_interval_ms = 100;
    if let Some(bao) = bao {
        config.connectors.secrets.vault_addr = Some(bao.addr.clone());
        let token_file = secrets.join("vault-token");
        std::fs::write(&token_file, &bao.token).unwrap();
        config.connectors.secrets.vault_token_file = Some(token_file);
    }
}

/// Every reference B might try that is not B's: A's in each backend, the operator's, the
/// daemon's own environment.
fn foreign_references(vault: bool) -> Vec<&'static str> {
    let mut refs = vec![
        "authref://file/tenants/tenant-a/gitlab",
        "authref://file/operator",
        "authref://file/vault-token",
        "authref://env/TENANT_A_GITLAB",
        "authref://env/VAULT_TOKEN",
        "authref://env/DATABASE_URL",
        "authref://env/PATH",
        "authref://env/HOME",
    ];
    if vault {
        refs.extend([
            "authref://vault/secret/tenants/tenant-a/gitlab#token",
            "authref://vault/secret/tenants/tenant-a-evil/gitlab#token",
            "authref://vault/secret/ci/gitlab#token",
            "authref://vault/sys/tenants/tenant-b/x",
        ]);
    }
    refs
}

/// What every test starts from: the real OpenBao (when asked for and present) holding A's
/// secret, the secret files, and the attacker's receiver.
struct Scene {
    bao: Option<Bao>,
    secrets: tempfile::TempDir,
    receiver: Receiver,
}

impl Scene {
    async fn new(vault: bool) -> Self {
        daemon::install_crypto_provider();
        let bao = if vault { openbao() } else { None };
        let secrets = tempfile::tempdir().unwrap();
        secret_files(secrets.path());
        if let Some(bao) = &bao {
            let secret = json!({"token": A_VAULT_SECRET});
            bao.put("tenants/tenant-a/gitlab", secret).await;
        }
        Self {
            bao,
            secrets,
            receiver: Receiver::start().await,
        }
    }

    fn configure(&self, config: &mut Config) {
        configure(config, self.secrets.path(), self.bao.as_ref());
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 10 s");
}

// === tests ===

#[tokio::test]
async fn another_tenants_or_the_daemons_secrets_are_refused_on_every_write() {
    let scene = Scene::new(true).await;
    let (bao, receiver) = (&scene.bao, &scene.receiver);
    let ctx = TestContext::start_with(|c| scene.configure(c)).await;
    let target = json!({"baseUrl": receiver.url()});

    // B's own integration, to update and to hang webhooks on.
    let own = ctx
        .post(
            "/api/v1/integrations",
            WRITER_B,
            &json!({"type": "gitlab", "name": "b-own", "config": target,
                    "authRef": "authref://file/tenants/tenant-b/gitlab"}),
        )
        .await
        .ok(201)
        .clone();
    let own_id = own["id"].as_str().unwrap();

    for (i, reference) in foreign_references(bao.is_some()).into_iter().enumerate() {
        for path in ["/api/v1/integrations", "/api/v1/integrations?verify=true"] {
            let answer = ctx
                .post(
                    path,
                    WRITER_B,
                    &json!({"type": "gitlab", "name": format!("steal-{i}"), "config": target,
                            "authRef": reference}),
                )
                .await;
            let problem = answer.problem(422);
            assert_eq!(problem["errors"][0]["field"], "authRef", "{reference}");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("docs/security.md"),
                "{problem}"
            );
        }
        ctx.put(
            &format!("/api/v1/integrations/{own_id}?verify=true"),
            WRITER_B,
            &json!({"name": "b-own", "config": target, "authRef": reference}),
            &[],
        )
        .await
        .problem(422);
        ctx.post(
            &format!("/api/v1/integrations/{own_id}/webhooks"),
            WRITER_B,
            &json!({"target": "o/r", "url": "https://ci.example.com/hook",
                    "secretAuthRef": reference}),
        )
        .await
        .problem(422);
        ctx.post(
            "/api/v1/webhook-subscriptions",
            WRITER_B,
            &json!({"name": format!("steal-{i}"), "targetUrl": "https://93.184.215.14/hook",
                    "secretAuthRef": reference}),
        )
        .await
        .problem(422);
    }
    // A refusal names B's own space, never A's secret or folder contents.
    let refused = ctx
        .post(
            "/api/v1/integrations",
            WRITER_B,
            &json!({"type": "gitlab", "name": "x", "config": target,
                    "authRef": "authref://file/tenants/tenant-a/gitlab"}),
        )
        .await;
    let detail = refused.problem(422)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("tenants/tenant-b/"), "{detail}");
    assert!(!detail.contains(A_FILE_SECRET), "{detail}");

    // B's own reference is accepted and used; A's are never sent anywhere.
    wait_until("B's own check reaches the receiver", async || {
        !receiver.requests().is_empty()
    })
    .await;
    assert!(
        receiver
            .requests()
            .iter()
            .any(|r| r.contains(B_FILE_SECRET)),
        "the control: B's own secret is sent to B's server"
    );
    receiver.assert_never_saw(&[
        A_FILE_SECRET,
        A_VAULT_SECRET,
        OPERATOR_FILE_SECRET,
        A_BOUND_SECRET,
    ]);

    // A, with the same request, does send its own secret: the path the attack used works.
    ctx.post(
        "/api/v1/integrations",
        WRITER_A,
        &json!({"type": "gitlab", "name": "a-own", "config": target,
                "authRef": "authref://file/tenants/tenant-a/gitlab"}),
    )
    .await
    .ok(201);
    wait_until("A's own check reaches the receiver", async || {
        receiver
            .requests()
            .iter()
            .any(|r| r.contains(A_FILE_SECRET))
    })
    .await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_link_out_of_the_tenants_folder_and_a_bound_secret_send_nothing() {
    let scene = Scene::new(false).await;
    let receiver = &scene.receiver;
    let ctx = TestContext::start_with(|c| scene.configure(c)).await;
    let target = json!({"baseUrl": receiver.url()});

    // The link is in B's folder, so it is accepted, but it leads to A's file.
    let linked = ctx
        .post(
            "/api/v1/integrations",
            WRITER_B,
            &json!({"type": "gitlab", "name": "linked", "config": target,
                    "authRef": "authref://file/tenants/tenant-b/link-to-a"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A's own secret, bound to gitlab.example.com, pointed at another host.
    let bound = ctx
        .post(
            "/api/v1/integrations",
            WRITER_A,
            &json!({"type": "gitlab", "name": "bound", "config": target,
                    "authRef": "authref://file/tenants/tenant-a/bound"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (id, key, why) in [
        (&linked, WRITER_B, "not found"),
        (&bound, WRITER_A, "may not be sent to 127.0.0.1"),
    ] {
        let result = ctx
            .post(
                &format!("/api/v1/integrations/{id}/health-check"),
                key,
                &json!({}),
            )
            .await
            .ok(200)
            .clone();
        assert_eq!(result["reason"], "credential_unavailable", "{result}");
        assert!(
            result["message"].as_str().unwrap().contains(why),
            "{result}"
        );
        ctx.get(&format!("/api/v1/integrations/{id}/resources"), key)
            .await;
    }
    // Scheduled checks too (every second here).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is sent: {:?}",
        receiver.requests()
    );
    // Changing where A's integration points is audited with the hosts.
    ctx.put(
        &format!("/api/v1/integrations/{bound}"),
        WRITER_A,
        &json!({"name": "bound", "config": {"baseUrl": "https://gitlab.example.com"},
                "authRef": "authref://file/tenants/tenant-a/bound"}),
        &[],
    )
    .await
    .ok(200);
    let audit = ctx
        .get(&format!("/api/v1/audit?integrationId={bound}"), ADMIN_A)
        .await
        .ok(200)
        .clone();
    let moved = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "integration.target_host_changed")
        .unwrap_or_else(|| panic!("no host change in {audit}"));
    assert_eq!(
        moved["details"]["before"],
        json!([receiver.addr.to_string()])
    );
    assert_eq!(moved["details"]["after"], json!(["gitlab.example.com"]));
    ctx.cleanup().await;
}

/// Rows written before namespaces existed: the upgrade keeps them, lists them as unhealthy
/// with the reason, and never resolves them.
#[tokio::test]
async fn rows_from_before_the_upgrade_keep_their_data_and_send_nothing() {
    let scene = Scene::new(true).await;
    let (bao, receiver) = (&scene.bao, &scene.receiver);
    let mut first = TestContext::start_with(|c| scene.configure(c)).await;
    let target = json!({"baseUrl": receiver.url()});
    let foreign = foreign_references(bao.is_some());
    let mut ids = Vec::new();
    for (i, _) in foreign.iter().enumerate() {
        let created = first
            .post(
                "/api/v1/integrations",
                WRITER_B,
                &json!({"type": "gitlab", "name": format!("old-{i}"), "config": target,
                        "authRef": "authref://file/tenants/tenant-b/gitlab"}),
            )
            .await
            .ok(201)
            .clone();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let subscription = first
        .post(
            "/api/v1/webhook-subscriptions",
            WRITER_B,
            &json!({"name": "old", "targetUrl": format!("{}/hook", receiver.url()),
                    "secretAuthRef": "authref://file/tenants/tenant-b/gitlab"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let database_url = first.database_url.clone();
    let dir_guard = first._dir.take();
    first.cleanup().await;

    // What an older hub let B write: references to what is not B's.
    let db = Database::connect(database_url.as_str()).await.unwrap();
    let txn = db.begin().await.unwrap();
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
            .await
            .unwrap();
    }
    let backend = db.get_database_backend();
    // Bound values: ids are stored as text on one backend and natively on the other.
    let sql = |table: &str, column: &str| match backend {
        sea_orm::DatabaseBackend::Postgres => {
            format!("UPDATE {table} SET {column} = $1 WHERE id = $2")
        }
        _ => format!("UPDATE {table} SET {column} = ? WHERE id = ?"),
    };
    let update = |table: &str, column: &str, id: &str, value: &str| {
        Statement::from_sql_and_values(
            backend,
            sql(table, column),
            [value.into(), uuid::Uuid::parse_str(id).unwrap().into()],
        )
    };
    for (id, reference) in ids.iter().zip(&foreign) {
        let done = txn
            .execute_raw(update("integrations", "auth_ref_uri", id, reference))
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    let done = txn
        .execute_raw(update(
            "webhook_subscriptions",
            "secret_auth_ref_uri",
            &subscription,
            "authref://file/tenants/tenant-a/gitlab",
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    txn.commit().await.unwrap();
    db.close().await.unwrap();
    receiver.clear();

    let ctx = TestContext::start_config(
        {
            let mut config = Config::default();
            config.http.listen = "127.0.0.1:0".parse().unwrap();
            config.database.url = database_url.clone();
            config.database.max_connections = 4;
            config.auth.api_keys = crate::context::standard_keys();
            config.auth.rate_limit.per_second = 0;
            scene.configure(&mut config);
            config
        },
        dir_guard.expect("the first daemon's folder"),
        database_url,
    )
    .await;
    // Nothing was lost: every row is there, with its reference as written.
    for (id, reference) in ids.iter().zip(&foreign) {
        let got = ctx
            .get(&format!("/api/v1/integrations/{id}"), WRITER_B)
            .await
            .ok(200)
            .clone();
        assert_eq!(got["authRef"], *reference);
        // Right after start-up a monitor may not be running yet (503, retry later).
        let mut checked = Value::Null;
        wait_until("the monitor answers an on-demand check", async || {
            let answer = ctx
                .post(
                    &format!("/api/v1/integrations/{id}/health-check"),
                    WRITER_B,
                    &json!({}),
                )
                .await;
            if answer.status == 503 {
                return false;
            }
            checked = answer.ok(200).clone();
            true
        })
        .await;
        assert_eq!(
            checked["reason"], "credential_unavailable",
            "{reference}: {checked}"
        );
        assert!(
            checked["message"].as_str().unwrap().contains("namespace")
                || checked["message"]
                    .as_str()
                    .unwrap()
                    .contains("daemon's own"),
            "{reference}: {checked}"
        );
        ctx.get(&format!("/api/v1/integrations/{id}/resources"), WRITER_B)
            .await;
    }
    // The tenant finds them by status, with the reason.
    wait_until("every old row is listed as unhealthy", async || {
        let page = ctx
            .get("/api/v1/integrations?status=unhealthy&limit=200", WRITER_B)
            .await;
        let items = page.ok(200)["items"].as_array().unwrap().clone();
        ids.iter().all(|id| {
            items.iter().any(|i| {
                i["id"] == *id
                    && i["statusReason"]
                        .as_str()
                        .is_some_and(|r| r.contains("credential_unavailable"))
            })
        })
    })
    .await;
    // A B event for the old subscription: its delivery fails without sending anything.
    ctx.post(
        "/api/v1/integrations",
        WRITER_B,
        &json!({"type": "inmemory", "name": "noisy",
                "config": {"behaviour": "flapping", "pattern": "hu"}}),
    )
    .await
    .ok(201);
    wait_until("a delivery to the old subscription fails", async || {
        let page = ctx
            .get(
                &format!("/api/v1/webhook-subscriptions/{subscription}/deliveries"),
                WRITER_B,
            )
            .await;
        page.ok(200)["items"].as_array().unwrap().iter().any(|d| {
            d["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("namespace"))
        })
    })
    .await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is sent for rows outside their namespace: {:?}",
        receiver.requests()
    );
    ctx.cleanup().await;
}
