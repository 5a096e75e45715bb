//! The real binary across upgrades:
//! - a change of tenant namespaces: stored references that are now outside their tenant's
//!   namespace are kept, listed in one WARN line at start-up, and never resolved;
//! - the health history of the unpartitioned schema (migration 10) is kept, paged and counted
//!   after the daemon migrates it in place (on PostgreSQL with `STELLA_TEST_DATABASE=postgres`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");
const KEY: &str = "upgrade-test-admin-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon {
    child: Child,
    api: String,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(dir: &std::path::Path, name: &str, extra: &str) -> Self {
        let url = format!("sqlite://{}?mode=rwc", dir.join("catalog.db").display());
        Self::start_on(dir, name, &url, extra)
    }

    fn start_on(dir: &std::path::Path, name: &str, url: &str, extra: &str) -> Self {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [database]\nurl = \"{url}\"\n\
                 [connectors.secrets]\nsecrets_dir = \"{}\"\n{extra}\n\
                 [[auth.api_keys]]\nid = \"admin\"\ntenant = \"t\"\n\
                 scopes = [\"integrations:read\", \"integrations:write\", \"integrations:admin\"]\n\
                 sha256 = \"{}\"\n",
                dir.join("secrets").display(),
                hex::encode(daemon::auth::api_key::digest(KEY)),
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("STELLA_LOG_FORMAT", "json")
            .env_remove("STELLA_CONFIG")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn ready(&self, http: &reqwest::Client) {
        let ready = self.api.replace("/api/v1", "/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(&ready).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the daemon did not become ready: {}", self.log());
    }

    fn stop(mut self) {
        // SIGTERM, and wait: the database must be closed before the next start.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn references_outside_a_moved_namespace_are_kept_and_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets/tenants/t")).unwrap();
    std::fs::write(dir.path().join("secrets/tenants/t/token"), "old-place").unwrap();
    daemon::install_crypto_provider();
    let http = reqwest::Client::new();

    let first = Daemon::start(dir.path(), "before", "");
    first.ready(&http).await;
    let created: serde_json::Value = http
        .post(format!("{}/integrations", first.api))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"type": "inmemory", "name": "old",
            "authRef": "authref://file/tenants/t/token"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    assert!(
        !first.log().contains("outside their tenant"),
        "{}",
        first.log()
    );
    first.stop();

    // The operator moves every tenant's file folder.
    let second = Daemon::start(dir.path(), "after", "file_tenant_dir = \"teams/{tenant}\"");
    second.ready(&http).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let warned = loop {
        let log = second.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("outside their tenant's secret namespace"))
            .collect();
        if !warnings.is_empty() {
            break warnings.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "no WARN line: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(warned.len(), 1, "one line: {warned:?}");
    let line: serde_json::Value = serde_json::from_str(&warned[0]).unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["count"], 1, "{line}");
    let listed = line["references"].as_str().unwrap();
    assert!(
        listed.contains(&format!("integration {id} of tenant t")),
        "{line}"
    );
    assert!(!warned[0].contains("old-place"), "no secret in the log");

    // Kept as written; its check reports the reason instead of reading the file.
    let kept: serde_json::Value = http
        .get(format!("{}/integrations/{id}", second.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["authRef"], "authref://file/tenants/t/token");
    second.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_history_of_the_unpartitioned_schema_survives_the_upgrade() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseBackend, Set, TransactionTrait};

    let dir = tempfile::tempdir().unwrap();
    let url = actors::db::testing::fresh_url(dir.path()).await;
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    {
        // The schema of before partitioning, with ten hours of results in it.
        let db = actors::db::connect(&url, &Default::default())
            .await
            .unwrap();
        Migrator::up(&db, Some(10)).await.unwrap();
        let backend = db.get_database_backend();
        let txn = db.begin().await.unwrap();
        if backend == DatabaseBackend::Postgres {
            txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
                .await
                .unwrap();
        }
        entity::integration::ActiveModel {
            id: Set(id),
            tenant_id: Set("t".into()),
            provider_type: Set("inmemory".into()),
            name: Set("old".into()),
            config_json: Set(serde_json::json!({})),
            auth_ref_uri: Set(None),
            status: Set("paused".into()),
            status_reason: Set(None),
            last_checked_at: Set(None),
            // Paused: the upgraded daemon adds no result of its own.
            monitoring_paused: Set(true),
            check_interval_seconds: Set(None),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        }
        .insert(&txn)
        .await
        .unwrap();
        let p = |n: usize| {
            if backend == DatabaseBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        for i in 0..120i64 {
            let status = if i % 10 == 0 { "unhealthy" } else { "healthy" };
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO health_checks (integration_id, tenant_id, checked_at, status, \
                     latency_ms) VALUES ({}, 't', {}, {}, {})",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                ),
                [
                    id.into(),
                    (now - chrono::Duration::minutes(600 - i * 5)).into(),
                    status.into(),
                    i.into(),
                ],
            ))
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
        db.close().await.unwrap();
    }
    daemon::install_crypto_provider();
    let http = reqwest::Client::new();
    let daemon = Daemon::start_on(dir.path(), "upgraded", &url, "");
    daemon.ready(&http).await;
    let get = |query: String| {
        let http = http.clone();
        let url = format!("{}/integrations/{id}/health{query}", daemon.api);
        async move {
            let r = http.get(url).bearer_auth(KEY).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let all = get("?limit=200".into()).await;
    let history = all["history"].as_array().unwrap();
    assert_eq!(history.len(), 120, "{all}");
    assert_eq!(history[0]["latencyMs"], 119, "newest first");
    assert!(all["nextCursor"].is_null());
    assert_eq!(all["uptime"]["last24h"], 0.9, "{all}");
    // Pages of 50 by time cover the same results.
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = get(format!("?limit=50&cursor={cursor}")).await;
        seen += page["history"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 120);
    daemon.stop();
}
