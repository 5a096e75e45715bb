//! The reference plugin (`plugins/jenkins`, Python) against a loopback fake of Jenkins: health
//! mapping, basic auth from the per-call credential, job listing, validation, and protocol
//! conformance through the library and the `plugin-conformance` command.

mod external_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use connectors::external::conformance::{self, Options};
use connectors::external::{Credential, CredentialSource, ExternalPlugin};
use connectors::{
    ConnectorEnv, ConnectorFactory, Error, Health, IntegrationSpec, Reason, SharedConnector,
};
use external_support::{fast_settings, load, obj, shipped};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const USER: &str = "ci-bot";
const TOKEN: &str = "11a2b3c4d5e6f7-api-token";

/// What the fake answers to every request.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    QuietingDown,
    Status(u16),
    Slow(Duration),
}

/// A loopback HTTP/1.1 server that answers like Jenkins' `/api/json`.
struct FakeJenkins {
    url: String,
    answer: Arc<Mutex<Answer>>,
    /// The Authorization header of each request, in order.
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeJenkins {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeJenkins {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer::Ok));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (answer.clone(), seen.clone());
        let task = tokio::spawn(async move {
            // Runs until the test drops the fake (abort).
            while let Ok((socket, _)) = listener.accept().await {
                let answer = *a.lock().unwrap();
                tokio::spawn(serve(socket, answer, s.clone()));
            }
        });
        Self {
            url,
            answer,
            seen,
            task,
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    answer: Answer,
    seen: Arc<Mutex<Vec<Option<String>>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let auth = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    seen.lock().unwrap().push(auth);
    let jobs = json!([
        {"_class": "hudson.model.FreeStyleProject", "name": "build", "url": "http://jenkins/job/build/"},
        {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": "deploy", "url": "http://jenkins/job/deploy/"}
    ]);
    let (status, extra, body) = match answer {
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (200, "", json!({"mode": "NORMAL", "jobs": jobs}).to_string())
        }
        Answer::Ok if path.starts_with("/api/json?tree=") => {
            (200, "", json!({"jobs": jobs}).to_string())
        }
        Answer::Ok => (
            200,
            "",
            json!({"mode": "NORMAL", "quietingDown": false, "jobs": jobs}).to_string(),
        ),
        Answer::QuietingDown => (
            200,
            "",
            json!({"mode": "NORMAL", "quietingDown": true}).to_string(),
        ),
        Answer::Status(429) => (429, "Retry-After: 30\r\n", String::new()),
        Answer::Status(s) => (s, "", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nX-Jenkins: 2.440.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Hands out a fixed credential, as the AuthRef resolver would.
struct Fixed(Result<&'static str, &'static str>);

#[async_trait::async_trait]
impl CredentialSource for Fixed {
    async fn credential(&self, _spec: &IntegrationSpec) -> Result<Option<Credential>, String> {
        self.0
            .map(|s| Some(Credential::new(s)))
            .map_err(str::to_owned)
    }
}

fn jenkins(credential: Result<&'static str, &'static str>) -> ExternalPlugin {
    ExternalPlugin::new(load(&shipped("jenkins")), fast_settings())
        .with_credentials(Arc::new(Fixed(credential)))
}

fn connector(plugin: &ExternalPlugin, config: Value) -> SharedConnector {
    let spec = IntegrationSpec {
        id: "jenkins-main".into(),
        tenant: "acme".into(),
        provider_type: "jenkins".into(),
        config: obj(config),
        auth_ref: Some("authref://vault/ci/jenkins#token".parse().unwrap()),
    };
    plugin.build(&spec, &ConnectorEnv::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_jenkins_answers_with_basic_auth_from_the_credential() {
    let fake = FakeJenkins::start().await;
    let plugin = jenkins(Ok(TOKEN));
    let c = connector(&plugin, json!({"baseUrl": fake.url, "username": USER}));

    let report = c.check_health().await;
    assert_eq!(report.health, Health::Healthy, "{report:?}");
    assert_eq!(report.message.as_deref(), Some("Jenkins 2.440.1"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"));
    assert_eq!(
        fake.seen.lock().unwrap().last().cloned().flatten(),
        Some(format!("Basic {basic}"))
    );

    for (answer, health, reason) in [
        (Answer::Status(401), Health::Unhealthy, Reason::AuthFailed),
        (Answer::Status(403), Health::Unhealthy, Reason::Forbidden),
        (
            Answer::Status(500),
            Health::Unhealthy,
            Reason::ProviderDegraded,
        ),
        (
            Answer::Status(503),
            Health::Unhealthy,
            Reason::ProviderDegraded,
        ),
        (Answer::Status(404), Health::Unhealthy, Reason::BadResponse),
        (Answer::Status(429), Health::Unhealthy, Reason::RateLimited),
        (
            Answer::QuietingDown,
            Health::Degraded,
            Reason::ProviderDegraded,
        ),
    ] {
        fake.answer(answer);
        let report = c.test_connection().await;
        assert_eq!(
            (report.health, report.reason),
            (health, Some(reason)),
            "{report:?}"
        );
        assert!(!report.message.unwrap_or_default().contains(TOKEN));
        if reason == Reason::RateLimited {
            assert_eq!(report.retry_after, Some(Duration::from_secs(30)));
        }
    }
    // One process served every call.
    assert_eq!(plugin.supervisor().starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_unreachable_hosts_are_network_failures() {
    let fake = FakeJenkins::start().await;
    fake.answer(Answer::Slow(Duration::from_secs(3)));
    let plugin = jenkins(Ok(TOKEN));
    let slow = connector(
        &plugin,
        json!({"baseUrl": fake.url, "username": USER, "timeoutSeconds": 1}),
    );
    let report = slow.check_health().await;
    assert_eq!(report.reason, Some(Reason::Network), "{report:?}");

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let refused = connector(&plugin, json!({"baseUrl": url, "username": USER}));
    let report = refused.check_health().await;
    assert_eq!(report.reason, Some(Reason::Network), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_and_failures_keep_their_meaning() {
    let fake = FakeJenkins::start().await;
    let plugin = jenkins(Ok(TOKEN));
    let c = connector(&plugin, json!({"baseUrl": fake.url, "username": USER}));
    let page = c.list_resources(None).await.unwrap();
    let names: Vec<(&str, &str)> = page
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.kind))
        .collect();
    assert_eq!(names, [("build", "job"), ("deploy", "job")]);
    assert_eq!(page.next_cursor, None);
    assert!(matches!(
        c.list_resources(Some("x")).await,
        Err(Error::InvalidCursor)
    ));
    fake.answer(Answer::Status(401));
    assert!(matches!(
        c.list_resources(None).await,
        Err(Error::Unauthorized)
    ));
    fake.answer(Answer::Status(403));
    assert!(matches!(
        c.list_resources(None).await,
        Err(Error::Forbidden)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_credential_is_reported_without_calling_the_plugin() {
    let plugin = jenkins(Err("authref://vault/ci/jenkins#token: the vault is sealed"));
    let c = connector(&plugin, json!({"baseUrl": "http://127.0.0.1:9"}));
    let report = c.check_health().await;
    assert_eq!(report.reason, Some(Reason::CredentialUnavailable));
    assert_eq!(plugin.supervisor().starts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_checked_locally_then_by_the_plugin() {
    let plugin = jenkins(Ok(TOKEN));
    let good = obj(json!({"baseUrl": "https://ci.example.com", "username": USER}));
    assert!(plugin.validate_config_async(&good).await.is_ok());
    // The schema catches unknown keys and types without the process...
    let unknown = obj(json!({"baseUrl": "https://ci.example.com", "colour": "red"}));
    assert_eq!(
        plugin.validate_config(&unknown).unwrap_err().field(),
        "config.colour"
    );
    // ...the plugin catches what a schema cannot.
    let ftp = obj(json!({"baseUrl": "ftp://ci.example.com"}));
    assert!(plugin.validate_config(&ftp).is_ok());
    let e = plugin.validate_config_async(&ftp).await.unwrap_err();
    assert_eq!(e.field(), "config.baseUrl");
    assert!(e.message().contains("http or https"), "{e}");
    let schema = plugin.config_schema();
    assert_eq!(schema["required"], json!(["baseUrl"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_plugin_passes_every_conformance_check() {
    let fake = FakeJenkins::start().await;
    let options = Options {
        config: obj(json!({"baseUrl": fake.url, "username": USER})),
        credential: Some(Credential::new(TOKEN)),
        settings: fast_settings(),
    };
    let checks = conformance::run(&shipped("jenkins"), options).await;
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "manifest",
            "initialize",
            "validate_config",
            "validate_config_refuses",
            "check_health",
            "test_connection",
            "list_resources",
            "unknown_method",
            "concurrent_calls",
            "no_restarts",
            "exits_on_stdin_close",
        ]
    );
    let health = checks.iter().find(|c| c.name == "check_health").unwrap();
    assert_eq!(health.outcome.as_deref(), Ok("healthy"));
    let listed = checks.iter().find(|c| c.name == "list_resources").unwrap();
    assert_eq!(listed.outcome.as_deref(), Ok("2 resources"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_command_passes_the_reference_plugin_and_fails_a_broken_one() {
    let fake = FakeJenkins::start().await;
    let config = json!({"baseUrl": fake.url, "username": USER}).to_string();
    let run = |dir: std::path::PathBuf, config: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_plugin-conformance"))
            .arg(dir)
            .args([
                "--config",
                &config,
                "--credential-env",
                "JENKINS_CONFORMANCE_TOKEN",
            ])
            .args(["--timeout-secs", "5"])
            .env("JENKINS_CONFORMANCE_TOKEN", TOKEN)
            .kill_on_drop(true)
            .output()
    };
    let out = run(shipped("jenkins"), config).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("11 passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains(TOKEN));

    let broken = external_support::fixture("wrong-protocol");
    let out = run(broken, "{}".into()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL initialize"), "{stdout}");
}
