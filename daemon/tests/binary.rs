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

mod leak {
    //! A real connector resolving a real secret: the secret never reaches the logs, an API
    //! response, or the database.

    use super::*;
    use base64::Engine;
    use poem::listener::{Acceptor, Listener, TcpListener};
    use poem::{EndpointExt, Request, Response, Route, Server, get, handler};

    const USER: &str = "robot";

    fn expected(secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"))
        )
    }

    /// A registry that wants Basic auth with `USER` and the secret in `REGISTRY_SECRET_ENV`.
    #[handler]
    fn v2(req: &Request) -> Response {
        let secret = req.data::<String>().cloned().unwrap_or_default();
        let authorized = req
            .header("authorization")
            .is_some_and(|h| h == expected(&secret));
        if !authorized {
            return Response::builder()
                .status(poem::http::StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", "Basic realm=\"registry\"")
                .body("{}");
        }
        match req.uri().path() {
            "/v2/_catalog" => Response::builder()
                .content_type("application/json")
                .body(r#"{"repositories": ["app"]}"#),
            _ => Response::builder()
                .content_type("application/json")
                .body("{}"),
        }
    }

    fn random(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn secrets_never_reach_logs_responses_or_the_database() {
        daemon::install_crypto_provider();
        let secret = random("s3cr3t");
        let wrong = random("wr0ng");
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let registry = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let app = Route::new()
            .at("/v2/", get(v2))
            .at("/v2/_catalog", get(v2))
            .data(secret.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));

        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let key = "leak-test-admin-key";
        let db = dir.path().join("leak.db");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n\
                 [health]\ninterval_seconds = 1\nbackoff_min_seconds = 1\nbackoff_max_seconds = 1\nwriter_flush_ms = 20\n\
                 [connectors.outbound]\nallow_private_networks = [\"127.0.0.1/32\"]\n\
                 [connectors.secrets.tenants.t]\nenv = [\"LEAK_TEST_*\"]\n\
                 [[auth.api_keys]]\nid = \"admin\"\ntenant = \"t\"\n\
                 scopes = [\"integrations:read\", \"integrations:write\", \"integrations:admin\"]\nsha256 = \"{}\"\n",
                db.display(),
                hex::encode(daemon::auth::api_key::digest(key)),
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("STELLA_LOG", "debug,connectors=trace,actors=trace")
            .env("STELLA_LOG_FORMAT", "json")
            .env("LEAK_TEST_SECRET", &secret)
            .env("LEAK_TEST_WRONG", &wrong)
            .env_remove("STELLA_CONFIG")
            .env_remove("DATABASE_URL")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Read the logs as they come: a full pipe would stop the daemon at its next log line.
        let mut stderr = child.stderr.take().unwrap();
        let log_reader = std::thread::spawn(move || {
            let mut logs = String::new();
            let _ = stderr.read_to_string(&mut logs);
            logs
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the daemon did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut bodies = String::new();
        let mut call =
            async |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
                let mut r = client
                    .request(method, format!("{base}{path}"))
                    .bearer_auth(key);
                if let Some(b) = body {
                    r = r.json(&b);
                }
                let text = r.send().await.unwrap().text().await.unwrap();
                bodies.push_str(&text);
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()
            };
        let good = call(
            reqwest::Method::POST,
            "/integrations?verify=true",
            Some(serde_json::json!({"type": "oci_registry", "name": "good",
                "config": {"baseUrl": format!("http://{registry}"), "username": USER},
                "authRef": "authref://env/LEAK_TEST_SECRET"})),
        )
        .await;
        let good_id = good["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{good}"))
            .to_owned();
        let bad = call(
            reqwest::Method::POST,
            "/integrations",
            Some(serde_json::json!({"type": "oci_registry", "name": "bad",
                "config": {"baseUrl": format!("http://{registry}"), "username": USER},
                "authRef": "authref://env/LEAK_TEST_WRONG"})),
        )
        .await;
        let bad_id = bad["id"].as_str().unwrap().to_owned();
        let checked = call(
            reqwest::Method::POST,
            &format!("/integrations/{good_id}/health-check"),
            None,
        )
        .await;
        assert_eq!(checked["status"], "healthy", "{checked}");
        let refused = call(
            reqwest::Method::POST,
            &format!("/integrations/{bad_id}/health-check"),
            None,
        )
        .await;
        assert_eq!(refused["reason"], "auth_failed", "{refused}");
        let listed = call(
            reqwest::Method::GET,
            &format!("/integrations/{good_id}/resources"),
            None,
        )
        .await;
        assert_eq!(listed["items"][0]["name"], "app", "{listed}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for path in [
            format!("/integrations/{good_id}/health"),
            format!("/integrations/{bad_id}/health"),
            "/integrations".to_owned(),
            "/audit".to_owned(),
            "/integrations/plugins".to_owned(),
        ] {
            call(reqwest::Method::GET, &path, None).await;
        }

        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let logs = log_reader.join().unwrap();
        let mut database = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("leak.db"))
            {
                database.extend(std::fs::read(path).unwrap());
            }
        }
        let database = String::from_utf8_lossy(&database);
        assert!(
            logs.contains("Integration status changed"),
            "the logs were captured"
        );
        for s in [
            secret.as_str(),
            wrong.as_str(),
            &expected(&secret),
            &expected(&wrong),
        ] {
            let s = s.trim_start_matches("Basic ");
            assert!(!logs.contains(s), "a secret reached the log");
            assert!(!bodies.contains(s), "a secret reached an API response");
            assert!(!database.contains(s), "a secret reached the database");
        }
    }
}
