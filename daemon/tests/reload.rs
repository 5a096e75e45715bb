//! `SIGHUP` on the real binary: API keys are swapped without a restart, a removed key is
//! refused, and a broken configuration leaves the keys in force.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");
const KEY_A: &str = "stk_reload-test-key-a";
const KEY_B: &str = "stk_reload-test-key-b";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &std::path::Path, port: u16, keys: &[(&str, &str)], interval: u64) -> String {
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n\
         [health]\ninterval_seconds = {interval}\n",
        dir.join("r.db").display()
    );
    for (id, key) in keys {
        text.push_str(&format!(
            "[[auth.api_keys]]\nid = \"{id}\"\ntenant = \"acme\"\nscopes = [\"integrations:read\"]\n\
             sha256 = \"{}\"\n",
            hex::encode(daemon::auth::api_key::digest(key))
        ));
    }
    text
}

/// The child, killed if the test fails before it stops it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn status(client: &reqwest::Client, port: u16, key: &str) -> Option<u16> {
    client
        .get(format!("http://127.0.0.1:{port}/api/v1/integrations"))
        .bearer_auth(key)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits (at most `limit`) until `key` gets `expected`.
async fn eventually(client: &reqwest::Client, port: u16, key: &str, expected: u16, limit: u64) {
    let deadline = Instant::now() + Duration::from_secs(limit);
    loop {
        let got = status(client, port, key).await;
        if got == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key}: {got:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wait_for_log(log: &Mutex<String>, needle: &str, from: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap()[from..].contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_api_keys_and_a_broken_file_changes_nothing() {
    daemon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let port = free_port();
    std::fs::write(&path, config(dir.path(), port, &[("a", KEY_A)], 300)).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env_remove("STELLA_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("STELLA_HTTP_LISTEN")
        .env("STELLA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut daemon = Daemon(child);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    eventually(&client, port, KEY_A, 200, 30).await;
    assert_eq!(status(&client, port, KEY_B).await, Some(401));

    // A second key, the first removed, and a setting that needs a restart.
    std::fs::write(&path, config(dir.path(), port, &[("b", KEY_B)], 60)).unwrap();
    let mark = log.lock().unwrap().len();
    signal(&daemon.0, "-HUP");
    eventually(&client, port, KEY_B, 200, 10).await;
    assert_eq!(status(&client, port, KEY_A).await, Some(401));
    wait_for_log(&log, "health.interval_seconds", mark);

    // A broken file, then a valid TOML file with an invalid key: both refused, keys unchanged.
    for broken in [
        "[http]\nlisten_on = 1\n".to_owned(),
        config(dir.path(), port, &[("b", KEY_B)], 60).replace("sha256 = \"", "sha256 = \"zz"),
    ] {
        std::fs::write(&path, broken).unwrap();
        let mark = log.lock().unwrap().len();
        signal(&daemon.0, "-HUP");
        wait_for_log(&log, "refused", mark);
        assert_eq!(status(&client, port, KEY_B).await, Some(200));
        assert_eq!(status(&client, port, KEY_A).await, Some(401));
    }

    // Still the same process, and it stops cleanly.
    let child = &mut daemon.0;
    signal(child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}: {}", log.lock().unwrap());
}
