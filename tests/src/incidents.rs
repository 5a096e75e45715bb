//! Incidents, end to end: integrations checking a provider mock on loopback that is taken down
//! and brought back, a webhook receiver on loopback, the incidents API, SSE replay, and the
//! egress self-check.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener as PoemListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, Server, handler};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::context::{READER_A, TENANT_A, TENANT_B, TestContext, WRITER_A, WRITER_B};

const SECRET: &str = "whsec_incident-receiver";
const OPENED: &str = "dev.stellaops.integration.incident.opened";
const UPDATED: &str = "dev.stellaops.integration.incident.updated";
const RESOLVED: &str = "dev.stellaops.integration.incident.resolved";

// === a provider on loopback that can be taken down ===

/// An OCI registry as far as a health check goes (`GET /v2/` answers 200), on a fixed
/// loopback port; taken down, the port refuses connections.
pub(crate) struct Provider {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Provider {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self {
            addr,
            task: Some(tokio::spawn(serve(listener))),
        }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub(crate) async fn up(&mut self) {
        // The port was ours a moment ago; binding it again may take a few tries.
        for _ in 0..100 {
            if let Ok(listener) = tokio::net::TcpListener::bind(self.addr).await {
                self.task = Some(tokio::spawn(serve(listener)));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("could not listen on {} again", self.addr);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.down();
    }
}

/// Answers every request with 200 and closes the connection, so that a provider taken down
/// leaves no kept-alive connection behind.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        });
    }
}

// === the webhook receiver ===

#[derive(Default)]
struct Got(Mutex<Vec<Value>>);

#[handler]
async fn hook(body: Vec<u8>, got: Data<&Arc<Got>>) -> Response {
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        got.0.0.lock().unwrap().push(event);
    }
    Response::builder()
        .status(poem::http::StatusCode::OK)
        .finish()
}

struct Receiver {
    addr: SocketAddr,
    got: Arc<Got>,
}

impl Receiver {
    async fn start() -> Self {
        let acceptor = PoemListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let got = Arc::new(Got::default());
        let app = Route::new()
            .at("/*path", poem::post(hook))
            .data(got.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { addr, got }
    }

    fn events(&self) -> Vec<Value> {
        self.got.0.lock().unwrap().clone()
    }

    fn of_type(&self, event_type: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == event_type)
            .collect()
    }
}

// === helpers ===

/// A daemon that checks every 2 s, turns degraded at the first failure, lets requests go to
/// loopback, and correlates with a short hold and quiet period; also used by the NATS tests.
pub(crate) async fn daemon(
    secrets: &tempfile::TempDir,
    customize: impl FnOnce(&mut daemon::config::Config),
) -> TestContext {
    for tenant in [TENANT_A, TENANT_B] {
        let folder = secrets.path().join("tenants").join(tenant);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("hook"), SECRET).unwrap();
    }
    let dir = secrets.path().to_owned();
    TestContext::start_with(move |c| {
        c.health.interval_seconds = 2;
        c.health.degraded_after = 1;
        c.health.unhealthy_after = 2;
        c.health.healthy_after = 1;
        c.health.backoff_min_seconds = 1;
        c.health.backoff_max_seconds = 1;
        c.health.timeout_seconds = 2;
        c.health.writer_flush_ms = 20;
        c.events.alerts.flap_transitions = 100_000;
        c.events.alerts.reminder_interval_seconds = 0;
        c.events.webhooks.backoff_min_ms = 50;
        c.events.webhooks.backoff_max_ms = 300;
        c.events.webhooks.poll_interval_ms = 100;
        c.connectors.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
        c.connectors.outbound.per_host_requests_per_second = 100_000;
        c.connectors.outbound.per_host_burst = 100_000;
        c.connectors.secrets.secrets_dir = Some(dir);
        c.incidents.window_seconds = 30;
        c.incidents.min_members = 5;
        c.incidents.min_share = 0.5;
        c.incidents.hold_seconds = 5;
        c.incidents.resolve_after_seconds = 5;
        c.incidents.update_interval_seconds = 60;
        customize(c);
    })
    .await
}

pub(crate) async fn registry(ctx: &TestContext, key: &str, name: &str, base_url: &str) -> Uuid {
    let body = json!({"type": "oci_registry", "name": name, "config": {"baseUrl": base_url}});
    ctx.post("/api/v1/integrations", key, &body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn subscribe(ctx: &TestContext, key: &str, tenant: &str, url: &str, extra: Value) {
    let mut body = json!({"name": "receiver", "targetUrl": url,
        "secretAuthRef": format!("authref://file/tenants/{tenant}/hook")});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    ctx.post("/api/v1/webhook-subscriptions", key, &body)
        .await
        .ok(201);
}

/// Polls until `probe` gives a value, every 200 ms for at most `seconds`.
async fn eventually<T>(seconds: u64, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn statuses(ctx: &TestContext, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/integrations?limit=200&cursor={c}"),
            None => "/api/v1/integrations?limit=200".to_owned(),
        };
        let page = ctx.get(&path, key).await.ok(200).clone();
        for item in page["items"].as_array().unwrap() {
            out.push(item["status"].as_str().unwrap_or_default().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out
}

async fn incidents(ctx: &TestContext, key: &str, query: &str) -> Vec<Value> {
    ctx.get(&format!("/api/v1/incidents{query}"), key)
        .await
        .ok(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn ids(data: &Value, field: &str) -> HashSet<Uuid> {
    data[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect()
}

/// The tenant's events replayed on SSE with `query`, read until one of type `until` comes
/// (at most 15 s).
async fn sse_replay(ctx: &TestContext, query: &str, until: &str) -> Vec<Value> {
    use futures::StreamExt;
    let response = reqwest::Client::new()
        .get(ctx.url(&format!("/api/v1/events{query}")))
        .bearer_auth(READER_A)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    loop {
        let events = parse(&text);
        if events.iter().any(|e| e["type"] == until) {
            return events;
        }
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("no {until} replayed: {text}"),
        }
    }
}

// === tests ===

#[tokio::test]
async fn a_provider_outage_under_500_integrations_is_one_incident_opened_and_resolved() {
    const FLEET: usize = 500;
    let secrets = tempfile::tempdir().unwrap();
    let mut provider = Provider::start().await;
    let receiver = Receiver::start().await;
    let ctx = daemon(&secrets, |_| {}).await;
    subscribe(
        &ctx,
        WRITER_A,
        TENANT_A,
        &format!("http://{}/hook", receiver.addr),
        json!({}),
    )
    .await;
    let mut fleet = HashSet::new();
    for i in 0..FLEET {
        fleet.insert(
            registry(
                &ctx,
                WRITER_A,
                &format!("registry-{i}"),
                &provider.base_url(),
            )
            .await,
        );
    }
    eventually(120, "the whole fleet is healthy", async || {
        let s = statuses(&ctx, READER_A).await;
        (s.len() == FLEET && s.iter().all(|s| s == "healthy")).then_some(())
    })
    .await;
    let outage = chrono::Utc::now();
    provider.down();
    let incident = eventually(60, "one incident with every integration", async || {
        let open = incidents(&ctx, READER_A, "?state=open").await;
        let one = open.first()?;
        (one["memberCount"] == FLEET).then(|| one.clone())
    })
    .await;
    assert_eq!(
        incidents(&ctx, READER_A, "").await.len(),
        1,
        "exactly one incident"
    );
    assert_eq!(incident["domain"]["kind"], "provider");
    assert_eq!(incident["domain"]["value"], provider.base_url());
    let id = incident["id"].as_str().unwrap().to_owned();
    let detail = ctx
        .get(&format!("/api/v1/incidents/{id}"), READER_A)
        .await
        .ok(200)
        .clone();
    let members: HashSet<Uuid> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["integrationId"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(members, fleet);

    provider.up().await;
    let resolved = eventually(90, "the incident is resolved", async || {
        let got = receiver.of_type(RESOLVED);
        (!got.is_empty()).then_some(got)
    })
    .await;
    // Let everything due be delivered, then count.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let opened = receiver.of_type(OPENED);
    let resolved_all = receiver.of_type(RESOLVED);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(resolved_all.len(), 1);
    assert_eq!(resolved[0]["data"]["incidentId"], id.as_str());
    assert_eq!(resolved[0]["data"]["memberCount"], FLEET);
    assert_eq!(ids(&resolved[0]["data"], "integrationIds"), fleet);
    assert!(resolved[0]["data"]["resolvedAt"].is_string());
    let opened_members = opened[0]["data"]["memberCount"].as_u64().unwrap() as usize;
    assert!((5..=FLEET).contains(&opened_members));
    assert_eq!(
        ids(&opened[0]["data"], "integrationIds").len(),
        opened_members
    );
    assert!(ids(&opened[0]["data"], "integrationIds").is_subset(&fleet));
    // No member's status change went to the (default) subscription one by one.
    let after: Vec<Value> = receiver
        .events()
        .into_iter()
        .filter(|e| {
            let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
            time >= outage
        })
        .collect();
    let per_member: Vec<&Value> = after
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .starts_with("dev.stellaops.integration.health.")
        })
        .collect();
    assert!(
        per_member.is_empty(),
        "{} member events delivered: {:?}",
        per_member.len(),
        per_member.first()
    );
    assert!(
        after
            .iter()
            .all(|e| [OPENED, UPDATED, RESOLVED].contains(&e["type"].as_str().unwrap()))
    );

    // The history of a member shows every change.
    let member = fleet.iter().next().unwrap();
    let history = ctx
        .get(
            &format!("/api/v1/integrations/{member}/health?limit=200"),
            READER_A,
        )
        .await
        .ok(200)
        .clone();
    let seen: HashSet<String> = history["history"]
        .as_array()
        .or_else(|| history["items"].as_array())
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    for status in ["healthy", "unhealthy"] {
        assert!(
            seen.contains(status),
            "{status} result missing from {seen:?}"
        );
    }
    // Its status changes are in the outbox and on SSE as ever: failing, then recovered.
    let replay = sse_replay(
        &ctx,
        &format!("?after=0&integrationId={member}"),
        "dev.stellaops.integration.health.recovered",
    )
    .await;
    assert!(
        replay
            .iter()
            .any(|e| e["type"] == "dev.stellaops.integration.health.changed"
                && e["data"]["status"] == "degraded"
                && e["data"]["reason"] == "network"),
        "no failure on SSE: {replay:?}"
    );
    // The resolved incident is listed as such.
    let listed = incidents(&ctx, READER_A, "?state=resolved").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "resolved");
    assert!(incidents(&ctx, READER_A, "?state=open").await.is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn two_tenants_behind_one_failing_host_get_one_incident_each() {
    let secrets = tempfile::tempdir().unwrap();
    let mut provider = Provider::start().await;
    let ctx = daemon(&secrets, |_| {}).await;
    let mut a = HashSet::new();
    let mut b = HashSet::new();
    for i in 0..6 {
        a.insert(registry(&ctx, WRITER_A, &format!("a-{i}"), &provider.base_url()).await);
        b.insert(registry(&ctx, WRITER_B, &format!("b-{i}"), &provider.base_url()).await);
    }
    eventually(60, "both fleets are healthy", async || {
        let all = [
            statuses(&ctx, READER_A).await,
            statuses(&ctx, WRITER_B).await,
        ]
        .concat();
        (all.len() == 12 && all.iter().all(|s| s == "healthy")).then_some(())
    })
    .await;
    provider.down();
    let mut found = Vec::new();
    for (key, fleet) in [(READER_A, &a), (WRITER_B, &b)] {
        let incident = eventually(60, "an incident with the tenant's six", async || {
            let open = incidents(&ctx, key, "?state=open").await;
            (open.len() == 1 && open[0]["memberCount"] == 6).then(|| open[0].clone())
        })
        .await;
        let id = incident["id"].as_str().unwrap().to_owned();
        let detail = ctx
            .get(&format!("/api/v1/incidents/{id}"), key)
            .await
            .ok(200)
            .clone();
        let members: HashSet<Uuid> = detail["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["integrationId"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(&members, fleet, "only the tenant's own integrations");
        found.push(id);
    }
    assert_ne!(found[0], found[1]);
    // Neither tenant sees the other's incident, not even by id.
    ctx.get(&format!("/api/v1/incidents/{}", found[1]), READER_A)
        .await
        .problem(404);
    ctx.get(&format!("/api/v1/incidents/{}", found[0]), WRITER_B)
        .await
        .problem(404);
    assert_eq!(incidents(&ctx, READER_A, "").await.len(), 1);
    assert_eq!(incidents(&ctx, WRITER_B, "").await.len(), 1);
    let metrics = ctx
        .client
        .get(ctx.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "integration_incidents_opened_total",
        "integration_incidents_open",
        "integration_incident_members",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_single_failing_integration_still_alerts_on_its_own() {
    let secrets = tempfile::tempdir().unwrap();
    let mut lonely = Provider::start().await;
    let others = Provider::start().await;
    let receiver = Receiver::start().await;
    let ctx = daemon(&secrets, |_| {}).await;
    subscribe(
        &ctx,
        WRITER_A,
        TENANT_A,
        &format!("http://{}/hook", receiver.addr),
        json!({}),
    )
    .await;
    let id = registry(&ctx, WRITER_A, "lonely", &lonely.base_url()).await;
    for i in 0..5 {
        registry(&ctx, WRITER_A, &format!("other-{i}"), &others.base_url()).await;
    }
    eventually(60, "all healthy", async || {
        let s = statuses(&ctx, READER_A).await;
        (s.len() == 6 && s.iter().all(|s| s == "healthy")).then_some(())
    })
    .await;
    lonely.down();
    let changed = eventually(60, "its failure is delivered", async || {
        receiver.events().into_iter().find(|e| {
            e["type"] == "dev.stellaops.integration.health.changed"
                && e["subject"] == id.to_string()
                && e["data"]["reason"] == "network"
        })
    })
    .await;
    assert_eq!(changed["data"]["status"], "degraded");
    assert!(receiver.of_type(OPENED).is_empty());
    assert!(incidents(&ctx, READER_A, "").await.is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_subscription_that_asks_for_members_gets_them_and_sse_replays_the_incident() {
    let secrets = tempfile::tempdir().unwrap();
    let mut provider = Provider::start().await;
    let receiver = Receiver::start().await;
    let ctx = daemon(&secrets, |_| {}).await;
    subscribe(
        &ctx,
        WRITER_A,
        TENANT_A,
        &format!("http://{}/hook", receiver.addr),
        json!({"incidentMembers": "deliver"}),
    )
    .await;
    let sub = ctx
        .get("/api/v1/webhook-subscriptions", READER_A)
        .await
        .ok(200)["items"][0]
        .clone();
    assert_eq!(sub["incidentMembers"], "deliver");
    for i in 0..6 {
        registry(&ctx, WRITER_A, &format!("r-{i}"), &provider.base_url()).await;
    }
    eventually(60, "all healthy", async || {
        let s = statuses(&ctx, READER_A).await;
        (s.len() == 6 && s.iter().all(|s| s == "healthy")).then_some(())
    })
    .await;
    provider.down();
    eventually(
        60,
        "the incident and its members are delivered",
        async || {
            let members = receiver
                .events()
                .iter()
                .filter(|e| {
                    e["type"] == "dev.stellaops.integration.health.changed"
                        && e["data"]["status"] == "degraded"
                })
                .count();
            (members == 6 && receiver.of_type(OPENED).len() == 1).then_some(())
        },
    )
    .await;
    // Replayed from the outbox on SSE, like every event.
    let replay = sse_replay(
        &ctx,
        "?after=0&type=dev.stellaops.integration.incident.*",
        OPENED,
    )
    .await;
    let event = replay.iter().find(|e| e["type"] == OPENED).unwrap();
    assert_eq!(
        event["data"]["memberCount"].as_u64().map(|n| n >= 5),
        Some(true)
    );
    assert_eq!(event["tenant"], TENANT_A);
    ctx.cleanup().await;
}

#[tokio::test]
async fn an_egress_outage_is_one_platform_incident_and_marks_nothing_unhealthy() {
    let secrets = tempfile::tempdir().unwrap();
    let mut provider = Provider::start().await;
    let mut probe = Provider::start().await;
    let probe_addr = probe.addr.to_string();
    let ctx = daemon(&secrets, move |c| {
        c.incidents.egress.probes = vec![probe_addr];
        c.incidents.egress.interval_seconds = 1;
        c.incidents.egress.timeout_ms = 500;
    })
    .await;
    let mut fleet = Vec::new();
    for i in 0..8 {
        fleet.push(registry(&ctx, WRITER_A, &format!("r-{i}"), &provider.base_url()).await);
    }
    eventually(60, "all healthy", async || {
        let s = statuses(&ctx, READER_A).await;
        (s.len() == 8 && s.iter().all(|s| s == "healthy")).then_some(())
    })
    .await;
    // Nothing answers: neither the probe nor the provider.
    probe.down();
    let incident = eventually(30, "one egress incident", async || {
        let open = incidents(&ctx, READER_A, "?state=open").await;
        (open.len() == 1).then(|| open[0].clone())
    })
    .await;
    assert_eq!(incident["domain"]["kind"], "egress");
    assert_eq!(incident["memberCount"], 8);
    provider.down();
    // Checks go on and are recorded with their reason, but nothing turns unhealthy.
    let member = fleet[0];
    eventually(30, "failed checks are recorded", async || {
        let history = ctx
            .get(
                &format!("/api/v1/integrations/{member}/health?limit=50"),
                READER_A,
            )
            .await
            .ok(200)
            .clone();
        let rows = history["history"]
            .as_array()
            .or_else(|| history["items"].as_array())?
            .clone();
        rows.iter().any(|r| r["reason"] == "network").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = statuses(&ctx, READER_A).await;
    assert!(s.iter().all(|s| s == "healthy"), "{s:?}");
    assert_eq!(
        incidents(&ctx, READER_A, "").await.len(),
        1,
        "only the platform incident"
    );
    // The way out comes back: the incident resolves.
    provider.up().await;
    probe.up().await;
    eventually(30, "the egress incident resolves", async || {
        let resolved = incidents(&ctx, READER_A, "?state=resolved").await;
        (resolved.len() == 1).then_some(())
    })
    .await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn incident_probes_on_loopback_are_refused_unless_allowed() {
    daemon::install_crypto_provider();
    let mut config = daemon::config::Config::default();
    config.incidents.egress.probes = vec!["127.0.0.1:9".into()];
    let refused = daemon::wiring::check(&config).err().expect("refused");
    assert!(
        refused.to_string().contains("incidents.egress"),
        "{refused}"
    );
    config.connectors.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
    assert!(daemon::wiring::check(&config).is_ok());
}
