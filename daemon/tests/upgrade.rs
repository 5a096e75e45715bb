//! The real binary across a change of tenant namespaces: stored references that are now
//! outside their tenant's namespace are kept, listed in one WARN line at start-up, and never
//! resolved.

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
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [database]\nurl = \"sqlite://{}?mode=rwc\"\n\
                 [connectors.secrets]\nsecrets_dir = \"{}\"\n{extra}\n\
                 [[auth.api_keys]]\nid = \"admin\"\ntenant = \"t\"\n\
                 scopes = [\"integrations:read\", \"integrations:write\", \"integrations:admin\"]\n\
                 sha256 = \"{}\"\n",
                dir.join("catalog.db").display(),
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
            "authRefUri": "authref://file/tenants/t/token"}))
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
    assert_eq!(kept["authRefUri"], "authref://file/tenants/t/token");
    second.stop();
}
