//! The real binary killed with SIGKILL in the middle of a webhook delivery, then restarted
//! on the same database: every event in the outbox still reaches the consumer (at least once;
//! the delivery cut off by the kill arrives twice, with the same event id).
//!
//! SQLite by default; `STELLA_TEST_DATABASE=postgres` runs it on a fresh PostgreSQL database.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Route, Server, handler};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, TransactionTrait};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");
const KEY: &str = "crash-test-admin-key";
const SECRET: &str = "whsec_crash-test-secret";
/// How long the consumer takes to answer each delivery: long enough to be killed mid-way.
const CONSUMER_DELAY: Duration = Duration::from_millis(400);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Default)]
struct Consumer {
    /// Event ids in arrival order.
    got: Mutex<Vec<String>>,
    /// Requests being answered right now.
    in_progress: AtomicUsize,
    /// The ids being answered right now.
    open: Mutex<HashSet<String>>,
}

#[handler]
async fn slow_hook(req: &Request, consumer: Data<&Arc<Consumer>>) -> &'static str {
    let id = req
        .header("x-stella-event-id")
        .unwrap_or_default()
        .to_owned();
    consumer.got.lock().unwrap().push(id.clone());
    consumer.open.lock().unwrap().insert(id.clone());
    consumer.in_progress.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(CONSUMER_DELAY).await;
    consumer.in_progress.fetch_sub(1, Ordering::SeqCst);
    consumer.open.lock().unwrap().remove(&id);
    "ok"
}

async fn start_consumer() -> (SocketAddr, Arc<Consumer>) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let consumer = Arc::new(Consumer::default());
    let app = Route::new()
        .at("/hook", poem::post(slow_hook))
        .data(consumer.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (addr, consumer)
}

fn write_config(dir: &Path, port: u16, database_url: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [database]\nurl = \"{database_url}\"\nmax_connections = 4\n\
             [health]\ninterval_seconds = 1\ndegraded_after = 1\nunhealthy_after = 1\nhealthy_after = 1\n\
             backoff_min_seconds = 1\nbackoff_max_seconds = 1\nwriter_flush_ms = 20\n\
             [events.alerts]\nflap_transitions = 100000\nreminder_interval_seconds = 0\n\
             [events.webhooks]\nbackoff_min_ms = 50\nbackoff_max_ms = 200\npoll_interval_ms = 100\n\
             [connectors.outbound]\nallow_private_networks = [\"127.0.0.1/32\"]\n\
             [connectors.secrets]\nsecrets_dir = \"{}\"\n\
             [[auth.api_keys]]\nid = \"admin\"\ntenant = \"t\"\n\
             scopes = [\"integrations:read\", \"integrations:write\", \"integrations:admin\"]\nsha256 = \"{}\"\n",
            dir.display(),
            hex::encode(daemon::auth::api_key::digest(KEY)),
        ),
    )
    .unwrap();
    path
}

/// Starts the binary and waits until it answers.
async fn start_daemon(dir: &Path, port: u16, database_url: &str, log: &str) -> Child {
    let config = write_config(dir, port, database_url);
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("STELLA_LOG", "info,actors=debug")
        .env_remove("STELLA_CONFIG")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start; see {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

async fn call(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}/api/v1{path}"))
        .bearer_auth(KEY);
    if !body.is_null() {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.unwrap_or_default()
}

/// The ids of every event in the outbox, read straight from the database.
async fn outbox_ids(database_url: &str) -> Vec<String> {
    let db = Database::connect(database_url).await.unwrap();
    let backend = db.get_database_backend();
    let txn = db.begin().await.unwrap();
    if backend == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
            .await
            .unwrap();
    }
    let rows = txn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id FROM events ORDER BY seq",
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    db.close().await.ok();
    rows.iter()
        .map(|r| r.try_get::<uuid::Uuid>("", "id").unwrap().to_string())
        .collect()
}

async fn poll_until(seconds: u64, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(Instant::now() < deadline, "not reached: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_delivery_loses_no_event() {
    daemon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    std::fs::write(dir.path().join("tenants/t/hook"), SECRET).unwrap();
    let database_url = actors::db::testing::fresh_url(dir.path()).await;
    let (consumer_addr, consumer) = start_consumer().await;

    let port = free_port();
    let mut first = start_daemon(dir.path(), port, &database_url, "first.log").await;
    let mut integrations = Vec::new();
    for name in ["crash-1", "crash-2"] {
        let created = call(
            port,
            reqwest::Method::POST,
            "/integrations",
            serde_json::json!({"type": "inmemory", "name": name,
                "config": {"behaviour": "flapping", "pattern": "hu"}}),
        )
        .await;
        integrations.push(created["id"].as_str().unwrap().to_owned());
    }
    let subscription = call(
        port,
        reqwest::Method::POST,
        "/alert-subscriptions",
        serde_json::json!({"name": "slow", "targetUrl": format!("http://{consumer_addr}/hook"),
            "secretAuthRef": "authref://file/tenants/t/hook"}),
    )
    .await;
    let subscription = subscription["id"].as_str().unwrap().to_owned();

    // Kill -9 while the consumer is in the middle of answering a delivery.
    poll_until(60, "deliveries under way", async || {
        consumer.got.lock().unwrap().len() >= 4 && consumer.in_progress.load(Ordering::SeqCst) > 0
    })
    .await;
    first.kill().unwrap();
    let cut_off: HashSet<String> = consumer.open.lock().unwrap().clone();
    first.wait().unwrap();
    assert!(!cut_off.is_empty(), "killed mid-delivery");

    let port = free_port();
    let mut second = start_daemon(dir.path(), port, &database_url, "second.log").await;
    for id in &integrations {
        call(
            port,
            reqwest::Method::PUT,
            &format!("/integrations/{id}/monitoring"),
            serde_json::json!({"paused": true, "intervalSeconds": null}),
        )
        .await;
    }
    let mut outbox = Vec::new();
    poll_until(120, "every outbox event received", async || {
        outbox = outbox_ids(&database_url).await;
        let got: HashSet<String> = consumer.got.lock().unwrap().iter().cloned().collect();
        let pending = call(
            port,
            reqwest::Method::GET,
            &format!("/alert-subscriptions/{subscription}/deliveries?status=pending&limit=1"),
            serde_json::Value::Null,
        )
        .await;
        outbox.iter().all(|id| got.contains(id)) && pending["items"] == serde_json::json!([])
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    second.wait().unwrap();

    let got = consumer.got.lock().unwrap().clone();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &got {
        *times.entry(id.as_str()).or_default() += 1;
    }
    assert!(outbox.len() >= 4, "{} events", outbox.len());
    for id in &outbox {
        assert!(times.contains_key(id.as_str()), "event {id} was lost");
    }
    for id in &cut_off {
        assert!(
            times.get(id.as_str()).copied().unwrap_or(0) >= 2,
            "the delivery cut off by the kill ({id}) was sent again after the restart"
        );
    }
    assert!(
        got.iter().all(|id| outbox.contains(id)),
        "only outbox events were delivered"
    );
}
