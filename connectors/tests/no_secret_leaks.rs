//! Every connector through its success and failure paths, with every log line of every crate
//! (TRACE, hyper and reqwest included) captured, and every report, listing and error kept: no
//! secret value, nor the base64 form basic auth sends, may appear in any of them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use connectors::{ConnectorEnv, ConnectorFactory, IntegrationSpec, WebhookRequest};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GITHUB_KEY: &str = include_str!("fixtures/github-app-test-key.pem");
const INSTALLATION_TOKEN: &str = "ghs_leakcheckinstallationtoken0001";
const GITLAB_TOKEN: &str = "glpat-leakcheck-0002";
const HARBOR_SECRET: &str = "harbor-leakcheck-0003";
const OCI_PASSWORD: &str = "oci-leakcheck-0004";
const VAULT_TOKEN: &str = "s.leakcheck-vault-0005";
const HOOK_SECRET: &str = "hook-leakcheck-0006";
const BEARER: &str = "oci-bearer-leakcheck-0007";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn spec(provider: &str, config: Value, auth_ref: &str) -> IntegrationSpec {
    IntegrationSpec {
        id: format!("leak-{provider}"),
        tenant: "t".into(),
        provider_type: provider.into(),
        config: config.as_object().unwrap().clone(),
        auth_ref: Some(auth_ref.parse().unwrap()),
    }
}

/// A provider that answers every request with `status` (and the fixed token exchanges).
async fn provider(status: u16, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": INSTALLATION_TOKEN,
            "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": BEARER})))
        .mount(&server)
        .await;
    let mut answer = ResponseTemplate::new(status)
        .set_body_json(body)
        .insert_header("retry-after", "5");
    if status == 401 {
        answer = answer.insert_header(
            "www-authenticate",
            format!("Bearer realm=\"{}/token\",service=\"s\"", server.uri()).as_str(),
        );
    }
    Mock::given(wiremock::matchers::any())
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn no_secret_in_logs_reports_listings_or_errors() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    connectors::testing::install_crypto();

    // Secrets: files, and a vault (wiremock speaking KV v2) for GitLab's token.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    for (name, value) in [
        ("github-key", GITHUB_KEY),
        ("harbor", HARBOR_SECRET),
        ("oci", OCI_PASSWORD),
        ("hook", HOOK_SECRET),
    ] {
        std::fs::write(dir.path().join("tenants/t").join(name), value).unwrap();
    }
    std::fs::write(dir.path().join("vault-token"), VAULT_TOKEN).unwrap();
    let vault = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/tenants/t/ci/gitlab"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"data": {"token": GITLAB_TOKEN}}
        })))
        .mount(&vault)
        .await;
    let mut settings = connectors::testing::loopback_settings();
    settings.outbound.request_timeout_ms = 1_000;
    settings.secrets.secrets_dir = Some(dir.path().to_owned());
    settings.secrets.vault_addr = Some(vault.uri());
    settings.secrets.vault_token_file = Some(dir.path().join("vault-token"));

    let mut outputs = Vec::new();
    let scenarios: [(u16, Value); 6] = [
        (
            200,
            json!({"resources": {"core": {"limit": 10, "remaining": 9, "reset": 0}}}),
        ),
        (200, json!([])),
        (401, json!({"message": "Bad credentials"})),
        (403, json!({})),
        (429, json!({})),
        (500, json!({"error": "boom"})),
    ];
    for (status, body) in scenarios {
        // A fresh environment per scenario, so a rate-limit pause does not hide the next one.
        let env = ConnectorEnv::new(&settings).unwrap();
        let server = provider(status, body).await;
        let url = server.uri();
        let connectors: Vec<(&dyn ConnectorFactory, IntegrationSpec)> = vec![
            (
                &connectors::github_app::Factory,
                spec(
                    "github_app",
                    json!({"appId": 1, "installationId": 1, "apiBaseUrl": url}),
                    "authref://file/tenants/t/github-key",
                ),
            ),
            (
                &connectors::gitlab::Factory,
                spec(
                    "gitlab",
                    json!({"baseUrl": url}),
                    "authref://vault/secret/tenants/t/ci/gitlab#token",
                ),
            ),
            (
                &connectors::harbor::Factory,
                spec(
                    "harbor",
                    json!({"baseUrl": url, "robotAccount": "robot$leak"}),
                    "authref://file/tenants/t/harbor",
                ),
            ),
            (
                &connectors::oci_registry::Factory,
                spec(
                    "oci_registry",
                    json!({"baseUrl": url, "username": "leak"}),
                    "authref://file/tenants/t/oci",
                ),
            ),
        ];
        for (factory, spec) in connectors {
            let c = factory.build(&spec, &env).unwrap();
            outputs.push(format!("{:?}", c.check_health().await));
            outputs.push(format!("{:?}", c.test_connection().await));
            match c.list_resources(None).await {
                Ok(page) => outputs.push(format!("{page:?}")),
                Err(e) => outputs.push(format!("{e} {e:?} {:?}", e.to_report())),
            }
            let hook = WebhookRequest {
                target: "o/r".into(),
                url: "https://ci.example.com/hook".into(),
                events: vec![],
                secret: Some("authref://file/tenants/t/hook".parse().unwrap()),
            };
            match c.setup_webhook(&hook).await {
                Ok(h) => outputs.push(format!("{h:?}")),
                Err(e) => outputs.push(format!("{e} {e:?}")),
            }
        }
        outputs.push(format!("{env:?}"));
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Secret resolved."),
        "the capture sees the crate's logs"
    );
    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let forbidden = [
        GITHUB_KEY.lines().nth(1).unwrap().to_owned(),
        INSTALLATION_TOKEN.into(),
        GITLAB_TOKEN.into(),
        HARBOR_SECRET.into(),
        OCI_PASSWORD.into(),
        VAULT_TOKEN.into(),
        HOOK_SECRET.into(),
        BEARER.into(),
        basic("robot$leak", HARBOR_SECRET),
        basic("leak", OCI_PASSWORD),
    ];
    let everything = format!("{logs}\n{}", outputs.join("\n"));
    for secret in &forbidden {
        assert!(
            !everything.contains(secret.as_str()),
            "a secret leaked; first occurrence in: {}",
            everything
                .lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or_default()
        );
    }
}
