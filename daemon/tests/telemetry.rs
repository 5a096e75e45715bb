//! Telemetry by the conventions, seen from outside the real binary: its `/metrics` read by
//! `promtool check metrics`, its HTTP metrics labelled by route template whatever a client
//! sends, its OTLP export taken in by a receiver built on the protocol's own definitions
//! (`opentelemetry-proto`), and W3C trace context continued from a request to the provider
//! call it makes.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use poem::http::StatusCode;
use poem::{EndpointExt, Request, Route};
use prost::Message;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_stella-integrations");
const KEY: &str = "stk_telemetry-test-admin-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon binary on SQLite, killed when dropped.
struct Daemon {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
        };
        let db = dir.path().join("t.db");
        let config = format!(
            r#"
[http]
listen = "127.0.0.1:{port}"
[database]
url = "sqlite://{db}?mode=rwc"
[auth.rate_limit]
per_second = 0
[[auth.api_keys]]
id = "admin"
tenant = "acme"
scopes = ["integrations:admin"]
sha256 = "{digest}"
{extra}
"#,
            db = db.display()
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&path)
            .env_remove("DATABASE_URL")
            .env_remove("STELLA_HTTP_LISTEN")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("STELLA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(std::env::temp_dir().join(format!("telemetry-{port}.log")))
                    .unwrap(),
            );
        for (k, v) in env {
            command.env(k, v);
        }
        Self {
            port,
            child: command.spawn().unwrap(),
            _dir: dir,
        }
    }

    /// What the daemon wrote to standard error (a file: not a terminal).
    fn log(&self) -> String {
        std::fs::read_to_string(std::env::temp_dir().join(format!("telemetry-{}.log", self.port)))
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn ready(&self, client: &reqwest::Client) {
        eventually(30, "the daemon to be ready", async || {
            let r = client.get(self.url("/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually<T>(seconds: u64, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.bearer_auth(KEY).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs `promtool check metrics` on `text`; its findings, one a line.
fn promtool(text: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package `prometheus`; scripts/test-all installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_label_requests_by_route_template() {
    daemon::install_crypto_provider();
    let daemon = Daemon::start("", &[]);
    let client = reqwest::Client::new();
    daemon.ready(&client).await;

    let (status, created) =
        send(client.post(daemon.url("/api/v1/integrations")).json(
            &json!({"type": "inmemory", "name": "demo", "config": {"behaviour": "healthy"}}),
        ))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = send(client.get(daemon.url(&format!("/api/v1/integrations/{id}")))).await;
    assert_eq!(status, 200);
    let (status, _) =
        send(client.post(daemon.url(&format!("/api/v1/integrations/{id}/health-check")))).await;
    assert_eq!(status, 200);
    // From the attacker's side: ids, unknown paths and invented methods must not become
    // label values (each would be a new series: unbounded memory in the daemon and the
    // scraper, and ids leaked to whoever reads the metrics).
    let stranger = uuid::Uuid::new_v4().to_string();
    let (status, _) =
        send(client.get(daemon.url(&format!("/api/v1/integrations/{stranger}")))).await;
    assert_eq!(status, 404);
    let probe = format!("/no-such-route-{stranger}");
    let (status, _) = send(client.get(daemon.url(&probe))).await;
    assert_eq!(status, 404);
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let _ = send(client.request(brew, daemon.url(&format!("/api/v1/integrations/{id}")))).await;

    let text = client
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for leaked in [&id, &stranger, "no-such-route", "BREW"] {
        assert!(!text.contains(leaked), "{leaked} in /metrics:\n{text}");
    }
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .collect();
    for want in [
        r#"http_request_method="GET",http_response_status_code="200",http_route="/api/v1/integrations/{id}""#,
        r#"http_request_method="GET",http_response_status_code="404",http_route="/api/v1/integrations/{id}""#,
        r#"http_request_method="POST",http_response_status_code="201",http_route="/api/v1/integrations""#,
        r#"http_request_method="POST",http_response_status_code="200",http_route="/api/v1/integrations/{id}/health-check""#,
        r#"http_request_method="_OTHER""#,
        // The unknown path: counted, without a route.
        r#"{http_request_method="GET",http_response_status_code="404"}"#,
    ] {
        assert!(
            requests.iter().any(|l| l.contains(want)),
            "no series with {want}:\n{}",
            requests.join("\n")
        );
    }
    let target_info = text
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .unwrap_or_else(|| panic!("no target_info:\n{text}"));
    assert!(
        target_info.contains(r#"service_name="stella-integrations""#),
        "{target_info}"
    );
    assert!(
        target_info.contains(&format!(
            r#"service_version="{}""#,
            env!("CARGO_PKG_VERSION")
        )),
        "{target_info}"
    );
    assert!(
        target_info.contains("service_instance_id=\""),
        "{target_info}"
    );
    // The conventions: durations in seconds, with the seed-named latency's twin beside it.
    for name in [
        "integration_health_latency_seconds_bucket{",
        "integration_health_latency_ms_bucket{",
        "integration_crud_total{",
        "integration_health_checks_total{",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    // Standard error is a file here, so the text logs carry no colour codes.
    let log = daemon.log();
    assert!(log.contains("Request answered."), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{log}"
    );

    let findings = promtool(&text);
    // promtool ran and reads the exposition: it names the one metric that keeps its seed
    // name against the conventions...
    assert!(
        findings
            .iter()
            .any(|f| f.starts_with("integration_health_latency_ms ")),
        "{findings:#?}"
    );
    // ...and nothing else.
    let others: Vec<&String> = findings
        .iter()
        .filter(|f| !f.starts_with("integration_health_latency_ms "))
        .collect();
    assert!(others.is_empty(), "promtool check metrics: {others:#?}");
}

/// What the loopback receiver was sent.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// `traceparent` of each request to the fake registry's `/v2/`.
    registry_traceparents: Vec<Option<String>>,
}

/// The fake registry's `GET /v2/`: an anonymous registry that is up, noting the
/// `traceparent` of each call.
fn registry_endpoint(sink: Arc<Mutex<Received>>) -> poem::RouteMethod {
    poem::get(poem::endpoint::make_sync(move |req: Request| {
        let traceparent = req.header("traceparent").map(str::to_owned);
        sink.lock().unwrap().registry_traceparents.push(traceparent);
        poem::Response::builder()
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .content_type("application/json")
            .body("{}")
    }))
}

/// An OTLP/HTTP (protobuf) receiver and a fake OCI registry on one loopback listener.
async fn receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let received = Arc::new(Mutex::new(Received::default()));
    let (traces, metrics, registry) = (received.clone(), received.clone(), received.clone());
    let app = Route::new()
        .at(
            "/v1/traces",
            poem::post(poem::endpoint::make(move |mut req: Request| {
                let sink = traces.clone();
                async move {
                    let body = req.take_body().into_vec().await.unwrap();
                    let decoded = ExportTraceServiceRequest::decode(body.as_slice())
                        .expect("an OTLP trace export");
                    sink.lock().unwrap().traces.push(decoded);
                    StatusCode::OK
                }
            })),
        )
        .at(
            "/v1/metrics",
            poem::post(poem::endpoint::make(move |mut req: Request| {
                let sink = metrics.clone();
                async move {
                    let body = req.take_body().into_vec().await.unwrap();
                    let decoded = ExportMetricsServiceRequest::decode(body.as_slice())
                        .expect("an OTLP metrics export");
                    sink.lock().unwrap().metrics.push(decoded);
                    StatusCode::OK
                }
            })),
        )
        .at("/v2/", registry_endpoint(registry.clone()))
        .at("/v2", registry_endpoint(registry))
        .map_to_response();
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a TCP address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (addr, received)
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| match value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

#[track_caller]
fn assert_resource(resource: Option<&Resource>) {
    let attributes = &resource.expect("a resource").attributes;
    assert_eq!(
        string_attr(attributes, "service.name"),
        Some("stella-integrations")
    );
    assert_eq!(
        string_attr(attributes, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let instance = string_attr(attributes, "service.instance.id").unwrap_or_default();
    assert!(!instance.is_empty(), "{attributes:?}");
}

/// A span as the test looks at it.
#[derive(Debug, Clone)]
struct SeenSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<KeyValue>,
}

fn spans(received: &Received) -> Vec<SeenSpan> {
    let mut out = Vec::new();
    for export in &received.traces {
        for resource_spans in &export.resource_spans {
            assert_resource(resource_spans.resource.as_ref());
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    out.push(SeenSpan {
                        name: span.name.clone(),
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        attributes: span.attributes.clone(),
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_metrics_reach_an_otlp_receiver_and_the_trace_reaches_the_provider() {
    daemon::install_crypto_provider();
    let (addr, received) = receiver().await;
    let daemon = Daemon::start(
        &format!(
            r#"
[telemetry]
otlp_endpoint = "http://{addr}"
[connectors.outbound]
allow_private_networks = ["127.0.0.0/8"]
"#
        ),
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
    );
    let client = reqwest::Client::new();
    daemon.ready(&client).await;

    // The caller's trace: the request continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (status, created) = send(
        client
            .post(daemon.url("/api/v1/integrations?verify=true"))
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .json(&json!({
                "type": "oci_registry",
                "name": "registry",
                "config": {"baseUrl": format!("http://{addr}")},
            })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // The connection test reached the registry carrying the same trace, as a child of one
    // of the daemon's spans (never the caller's own span id).
    let outbound = received
        .lock()
        .unwrap()
        .registry_traceparents
        .first()
        .cloned()
        .flatten()
        .expect("the registry call carried a traceparent");
    let parts: Vec<&str> = outbound.split('-').collect();
    assert_eq!(parts.len(), 4, "{outbound}");
    assert_eq!(parts[0], "00", "{outbound}");
    assert_eq!(parts[1], trace_id, "{outbound}");
    assert_ne!(parts[2], caller_span, "{outbound}");
    let outbound_parent = parts[2].to_owned();

    // A malformed traceparent starts a trace of its own; the request is served.
    let (status, _) = send(
        client
            .get(daemon.url("/api/v1/integrations"))
            .header("traceparent", "00-not-a-trace-01"),
    )
    .await;
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = eventually(31, "the request's spans at the receiver", async || {
        let seen = spans(&received.lock().unwrap());
        assert!(
            Instant::now() < deadline,
            "the request's spans (and {outbound_parent}, the registry call's parent) did not arrive; the receiver has {:#?}",
            seen.iter()
                .map(|s| (&s.name, &s.trace_id, &s.span_id, &s.parent_span_id))
                .collect::<Vec<_>>()
        );
        let in_trace: Vec<SeenSpan> = seen
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let has = |name: &str| in_trace.iter().any(|s| s.name == name);
        // The list request's span too: the exporter may send it in a later batch.
        (has("POST /api/v1/integrations")
            && has("catalog")
            && in_trace.iter().any(|s| s.span_id == outbound_parent)
            && seen.iter().any(|s| s.name == "GET /api/v1/integrations"))
        .then_some((seen, in_trace))
    })
    .await;
    let (all, in_trace) = seen;
    let request = in_trace
        .iter()
        .find(|s| s.name == "POST /api/v1/integrations")
        .unwrap();
    assert_eq!(request.parent_span_id, caller_span, "{request:?}");
    assert_eq!(
        string_attr(&request.attributes, "http.route"),
        Some("/api/v1/integrations")
    );
    let catalog = in_trace.iter().find(|s| s.name == "catalog").unwrap();
    assert_eq!(
        string_attr(&catalog.attributes, "integration_id"),
        Some(id.as_str()),
        "{catalog:?}"
    );
    assert_eq!(
        string_attr(&catalog.attributes, "action"),
        Some("create"),
        "{catalog:?}"
    );
    // The actors' own lifetime spans stay out of the export.
    assert!(
        all.iter().all(|s| s.name != "Actor"),
        "{:?}",
        all.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The malformed header's request is a root span of another trace.
    let list = all
        .iter()
        .find(|s| s.name == "GET /api/v1/integrations")
        .expect("the list request's span");
    assert_ne!(list.trace_id, trace_id);

    // Metrics arrive too, under the same resource, with units.
    let duration_unit = eventually(30, "metrics at the receiver", async || {
        let received = received.lock().unwrap();
        let mut duration_unit = None;
        let mut crud = false;
        for export in &received.metrics {
            for resource_metrics in &export.resource_metrics {
                assert_resource(resource_metrics.resource.as_ref());
                for scope in &resource_metrics.scope_metrics {
                    for metric in &scope.metrics {
                        if metric.name == "http.server.request.duration" {
                            duration_unit = Some(metric.unit.clone());
                        }
                        crud |= metric.name == "integration_crud";
                    }
                }
            }
        }
        // The first exports may come before the catalog change.
        duration_unit.filter(|_| crud)
    })
    .await;
    assert_eq!(duration_unit, "s");
}
