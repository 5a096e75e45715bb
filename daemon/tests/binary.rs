//! The real binary: first start prints a generated key once, no token reaches the logs, and
//! SIGTERM shuts it down cleanly.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn subcommands_print_the_spec_and_hash_keys() {
    let spec = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(spec.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
    assert!(spec["paths"]["/api/v1/integrations"].is_object());

    let mut hash = Command::new(BIN)
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = hash.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let migrate = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(dir.path().join("m.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_shows_the_key_once_and_logs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display()),
        )
        .env("STELLA_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("STELLA_LOG", "debug")
        .env("STELLA_LOG_FORMAT", "json")
        .env_remove("STELLA_CONFIG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());

    // The banner with the key is printed once the listener is up.
    let mut seen = String::new();
    let mut key = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("stk_")) {
            key = Some(k.to_owned());
        }
        if key.is_some() {
            break;
        }
    }
    let key = key.unwrap_or_else(|| panic!("no generated key in: {seen}"));

    daemon::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ok = client
        .post(format!("{base}/api/v1/integrations"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"type": "inmemory", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let wrong_key = "stk_not-a-real-key-but-secret-looking";
    let jwt_shaped = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    for bad in [wrong_key, jwt_shaped] {
        let answer = client
            .get(format!("{base}/api/v1/integrations"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        assert!(!answer.text().await.unwrap().contains(bad));
    }
    // A raw secret in a request is refused and not echoed or logged.
    let leaked = client
        .post(format!("{base}/api/v1/integrations"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"type": "gitlab", "name": "y", "config": {"baseUrl": "https://g", "token": "glpat-SECRET-VALUE"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(leaked.status(), 422);

    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    stderr.read_to_string(&mut seen).unwrap();

    assert_eq!(
        seen.matches(&key).count(),
        1,
        "the key must appear once, in the banner"
    );
    for secret in [wrong_key, jwt_shaped, "glpat-SECRET-VALUE"] {
        assert!(!seen.contains(secret), "{secret} reached the log");
    }
    assert!(seen.contains("Shutting down"));
}
