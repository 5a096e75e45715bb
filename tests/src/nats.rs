//! The NATS JetStream publisher against a real server (`nats://127.0.0.1:4222`, or
//! `STELLA_TEST_NATS_URL`; `scripts/nats-up` starts one): each tenant's wildcard receives that
//! tenant's events as CloudEvents with the outbox's ids, in outbox order, and never another
//! tenant's; events written while NATS is unreachable go out once it is back; a restarted
//! daemon resumes from its cursor without loss. Every run uses its own subject prefix and stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::events::StoredEvent;
use actors::events::incidents::IncidentMembers;
use actors::sinks::nats::{self, CONTENT_TYPE, CURSOR, MSG_ID_HEADER, NatsSettings};
use actors::store::SystemStore;
use daemon::config::Config;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::context::{
    READER_A, TENANT_A, TENANT_B, TestContext, WRITER_A, WRITER_B, api_key, standard_keys,
};
use crate::incidents::{self, Provider};

/// Where the test's NATS server is, when not on the default port.
const ENV_NATS_URL: &str = "STELLA_TEST_NATS_URL";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// A tenant whose id extends tenant A's with a dot: a naive subject would put its events under
/// tenant A's wildcard.
const TENANT_DOTTED: &str = "tenant-a.b";
const WRITER_DOTTED: &str = "test-key-writer-dotted";
/// The relay's batch: small, so that every phase takes several.
const BATCH: u64 = 4;
/// Longest wait for any condition.
const PATIENCE: Duration = Duration::from_secs(45);

fn nats_url() -> String {
    std::env::var(ENV_NATS_URL).unwrap_or_else(|_| DEFAULT_NATS_URL.into())
}

/// One run's names, so that concurrent runs never share a subject or a stream.
struct Names {
    prefix: String,
    stream: String,
}

/// Test streams start with this, then the second they were named in, so that a later run can
/// tell a stream that a failed run left behind from one in use.
const STREAM_PREFIX: &str = "STELLA_TEST_";
/// A test stream older than this is left over from a failed run.
const STALE_AFTER: Duration = Duration::from_secs(3600);

impl Names {
    fn new() -> Self {
        let run = Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("stella-test-{run}.events"),
            stream: format!("{STREAM_PREFIX}{}_{run}", unix_seconds()),
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Deletes the test streams that failed runs left behind.
async fn delete_stale_streams(js: &async_nats::jetstream::Context) {
    let names: Vec<String> = js
        .stream_names()
        .take(10_000)
        .filter_map(Result::ok)
        .collect()
        .await;
    for name in names {
        let named_at = name
            .strip_prefix(STREAM_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if named_at.is_some_and(|t| t + STALE_AFTER.as_secs() < unix_seconds()) {
            let _ = js.delete_stream(&name).await;
        }
    }
}

/// Checks every second, with flapping integrations, a relay in small batches, and `nats_url`.
fn configure(c: &mut Config, nats_url: &str, names: &Names) {
    c.auth.api_keys.push(api_key(
        "writer-dotted",
        WRITER_DOTTED,
        TENANT_DOTTED,
        &["integrations:write"],
    ));
    c.health.interval_seconds = 1;
    c.health.backoff_min_seconds = 1;
    c.health.backoff_max_seconds = 1;
    c.health.timeout_seconds = 2;
    c.health.writer_flush_ms = 20;
    c.health.degraded_after = 1;
    c.health.unhealthy_after = 1;
    c.health.healthy_after = 1;
    // Every transition is an event.
    c.events.alerts.flap_transitions = 10_000;
    c.events.nats = NatsSettings {
        url: Some(nats_url.into()),
        subject_prefix: names.prefix.clone(),
        stream: names.stream.clone(),
        max_age_seconds: 3600,
        batch: BATCH,
        timeout_ms: 2000,
        poll_interval_ms: 200,
        backoff_min_ms: 100,
        backoff_max_ms: 1000,
        ..NatsSettings::default()
    };
}

/// A configuration on an existing database, as [`TestContext::start_with`] builds it.
fn config_on(database_url: &str, nats_url: &str, names: &Names) -> Config {
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = database_url.into();
    config.database.max_connections = 4;
    config.auth.api_keys = standard_keys();
    config.auth.rate_limit.per_second = 0;
    configure(&mut config, nats_url, names);
    config
}

async fn stop_daemon(ctx: &mut TestContext) {
    let daemon = ctx.daemon.take().expect("a running daemon");
    daemon.shutdown().await.expect("clean shutdown");
}

async fn start_daemon(ctx: &mut TestContext, nats_url: &str, names: &Names) {
    let config = config_on(&ctx.database_url, nats_url, names);
    let daemon = daemon::start(config).await.expect("the daemon restarts");
    ctx.addr = daemon.local_addr();
    ctx.daemon = Some(daemon);
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

/// What a subscriber received.
#[derive(Clone, Debug)]
struct Received {
    subject: String,
    header: HashMap<String, String>,
    body: Value,
}

impl Received {
    fn id(&self) -> &str {
        self.body["id"].as_str().unwrap_or_default()
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Collects what `subscriber` receives until aborted.
fn collect(mut subscriber: async_nats::Subscriber) -> (Inbox, JoinHandle<()>) {
    let inbox = Inbox::default();
    let sink = inbox.clone();
    let task = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            let header = message
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .filter_map(|(name, values)| {
                    Some((name.to_string(), values.first()?.as_str().to_owned()))
                })
                .collect();
            let body = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            sink.lock().unwrap().push(Received {
                subject: message.subject.to_string(),
                header,
                body,
            });
        }
    });
    (inbox, task)
}

fn snapshot(inbox: &Inbox) -> Vec<Received> {
    inbox.lock().unwrap().clone()
}

/// Ids in order of first arrival.
fn first_arrivals(received: &[Received]) -> Vec<String> {
    let mut seen = HashSet::new();
    received
        .iter()
        .map(|r| r.id().to_owned())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Polls `probe` until it gives a value, for at most [`PATIENCE`].
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn system_store(database_url: &str) -> SystemStore {
    let db = actors::db::connect(database_url, &actors::db::PoolSettings::default())
        .await
        .expect("connect to the test database");
    actors::Store::new(db).system()
}

async fn outbox(system: &SystemStore) -> Vec<StoredEvent> {
    system
        .events_after(0, 1_000_000)
        .await
        .expect("read the outbox")
}

async fn cursor(system: &SystemStore) -> i64 {
    system.cursor(CURSOR).await.expect("read the cursor")
}

async fn create_flapping(ctx: &TestContext, key: &str, name: &str) {
    let body = json!({
        "type": "inmemory",
        "name": name,
        "config": {"behaviour": "flapping", "pattern": "hu"},
    });
    ctx.post("/api/v1/integrations", key, &body).await.ok(201);
}

/// A message as the relay must send it: on its tenant's subject, the CloudEvent as the body,
/// the event id as `Nats-Msg-Id` and `ce-id`.
#[track_caller]
fn assert_well_formed(r: &Received, prefix: &str, tenant: &str) {
    let event_type = r.body["type"].as_str().expect("a CloudEvent type");
    assert_eq!(
        r.subject,
        nats::subject(prefix, tenant, event_type),
        "{r:?}"
    );
    assert_eq!(r.body["specversion"], "1.0", "{r:?}");
    assert_eq!(r.body["tenant"], tenant, "{r:?}");
    let id = r.id();
    assert!(Uuid::parse_str(id).is_ok(), "{r:?}");
    assert_eq!(r.header.get(MSG_ID_HEADER).map(String::as_str), Some(id));
    assert_eq!(r.header.get("ce-id").map(String::as_str), Some(id));
    assert_eq!(
        r.header.get("ce-type").map(String::as_str),
        Some(event_type)
    );
    assert_eq!(
        r.header.get("Content-Type").map(String::as_str),
        Some(CONTENT_TYPE)
    );
}

#[tokio::test]
async fn tenants_receive_their_events_from_jetstream_and_restarts_lose_none() {
    let url = nats_url();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS with JetStream must answer at {url} (run scripts/nats-up): {e}")
        });
    let js = async_nats::jetstream::new(client.clone());
    delete_stale_streams(&js).await;
    let names = Names::new();
    let prefix = names.prefix.as_str();
    let subscribe = async |tenant: &str| {
        let wildcard = nats::tenant_wildcard(prefix, tenant);
        collect(client.subscribe(wildcard).await.expect("subscribe"))
    };
    let (inbox_a, task_a) = subscribe(TENANT_A).await;
    let (inbox_b, task_b) = subscribe(TENANT_B).await;
    let (inbox_dotted, task_dotted) = subscribe(TENANT_DOTTED).await;
    client.flush().await.expect("subscriptions registered");

    // 1. NATS unreachable: events wait in the outbox, the health engine goes on.
    let unreachable = format!("nats://127.0.0.1:{}", closed_port());
    let mut ctx = TestContext::start_with(|c| configure(c, &unreachable, &names)).await;
    create_flapping(&ctx, WRITER_A, "flap-a").await;
    create_flapping(&ctx, WRITER_B, "flap-b").await;
    create_flapping(&ctx, WRITER_DOTTED, "flap-dotted").await;
    let system = system_store(&ctx.database_url).await;
    eventually(
        "a backlog of several batches, of every tenant",
        async || {
            let events = outbox(&system).await;
            let tenants: HashSet<&str> = events.iter().map(|e| e.tenant_id.as_str()).collect();
            (tenants.len() == 3 && events.len() > 2 * BATCH as usize).then_some(())
        },
    )
    .await;
    stop_daemon(&mut ctx).await;
    assert_eq!(cursor(&system).await, 0, "nothing could be published");
    let backlog = outbox(&system).await.last().expect("events").seq;

    // 2. NATS reachable: the backlog goes out, then live events.
    start_daemon(&mut ctx, &url, &names).await;
    eventually("the backlog and live events published", async || {
        (cursor(&system).await > backlog).then_some(())
    })
    .await;

    // 3. A restart resumes from the cursor.
    stop_daemon(&mut ctx).await;
    let before_restart = cursor(&system).await;
    assert!(before_restart > backlog);
    let written_before_restart = outbox(&system).await.last().expect("events").seq;
    start_daemon(&mut ctx, &url, &names).await;
    eventually(
        "a batch of events written after the restart published",
        async || (cursor(&system).await > written_before_restart + BATCH as i64).then_some(()),
    )
    .await;
    stop_daemon(&mut ctx).await;

    let published_up_to = cursor(&system).await;
    let events = outbox(&system).await;
    let of = |tenant: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.tenant_id == tenant && e.seq <= published_up_to)
            .map(|e| e.id.to_string())
            .collect()
    };
    let (expected_a, expected_b, expected_dotted) = (of(TENANT_A), of(TENANT_B), of(TENANT_DOTTED));
    assert!(
        !expected_a.is_empty() && !expected_b.is_empty() && !expected_dotted.is_empty(),
        "every tenant has published events"
    );

    // Each tenant's wildcard got every published event of that tenant, in outbox order, and
    // nothing of any other tenant (tenant A's wildcard must not match `tenant-a.b`).
    let tenant_of: HashMap<String, &str> = events
        .iter()
        .map(|e| (e.id.to_string(), e.tenant_id.as_str()))
        .collect();
    for (tenant, inbox, expected) in [
        (TENANT_A, &inbox_a, &expected_a),
        (TENANT_B, &inbox_b, &expected_b),
        (TENANT_DOTTED, &inbox_dotted, &expected_dotted),
    ] {
        let received = eventually("every published event received", async || {
            let received = snapshot(inbox);
            (first_arrivals(&received).len() >= expected.len()).then_some(received)
        })
        .await;
        for r in &received {
            assert_well_formed(r, prefix, tenant);
            assert_eq!(
                tenant_of.get(r.id()).copied(),
                Some(tenant),
                "{tenant} received an event that is not its own: {r:?}"
            );
        }
        let arrivals = first_arrivals(&received);
        assert_eq!(
            &arrivals[..expected.len()],
            expected.as_slice(),
            "{tenant}: not every event, or not in outbox order"
        );
    }

    // The stream holds each published event once, with the relay's subjects.
    let mut stream = js
        .get_stream(&names.stream)
        .await
        .expect("the relay's stream");
    let info = stream.info().await.expect("stream info").clone();
    assert_eq!(info.config.subjects, vec![format!("{prefix}.>")]);
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    let mut stored = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("stored message");
        let id = message
            .headers
            .get(MSG_ID_HEADER)
            .expect("Nats-Msg-Id")
            .to_string();
        stored.push(id);
    }
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        distinct.len(),
        stored.len(),
        "a duplicate reached the stream"
    );
    for event in events.iter().filter(|e| e.seq <= published_up_to) {
        assert!(
            distinct.contains(&event.id.to_string()),
            "event {} is missing from the stream",
            event.seq
        );
    }
    assert!(stored.iter().all(|id| tenant_of.contains_key(id)));
    // Published in windows of two batches, acknowledged in order: the stream holds the
    // events in outbox order.
    let published: Vec<String> = events
        .iter()
        .filter(|e| e.seq <= published_up_to)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        &stored[..published.len().min(stored.len())],
        published.as_slice(),
        "the stream is not in outbox order"
    );

    js.delete_stream(&names.stream)
        .await
        .expect("delete the stream");
    for task in [task_a, task_b, task_dotted] {
        task.abort();
    }
    ctx.cleanup().await;
}

/// A NATS server of the test's own, on a free port, killed when dropped.
struct OwnServer {
    child: std::process::Child,
    port: u16,
}

impl OwnServer {
    /// Starts `nats-server` with JetStream, its store in `store` (the same store after a restart
    /// keeps the stream and its de-duplication state).
    async fn start(port: u16, store: &std::path::Path) -> Self {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/nats-up installs it)");
        let server = Self { child, port };
        eventually("our nats-server answering", async || {
            async_nats::connect(server.url()).await.ok().map(|_| ())
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (nothing listens on it until someone binds it).
fn free_port() -> u16 {
    closed_port()
}

#[tokio::test]
async fn events_written_while_nats_is_down_go_out_when_it_is_back() {
    let store = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = OwnServer::start(port, store.path()).await;
    let names = Names::new();
    let mut ctx = TestContext::start_with(|c| configure(c, &server.url(), &names)).await;
    create_flapping(&ctx, WRITER_A, "flap-a").await;
    create_flapping(&ctx, WRITER_B, "flap-b").await;
    let system = system_store(&ctx.database_url).await;
    eventually("events published", async || {
        (cursor(&system).await > BATCH as i64).then_some(())
    })
    .await;

    // The server crashes: the health engine goes on writing events, which wait in the outbox.
    drop(server);
    let at_crash = outbox(&system).await.last().expect("events").seq;
    eventually("two batches written while NATS is down", async || {
        let last = outbox(&system).await.last().map_or(0, |e| e.seq);
        (last > at_crash + 2 * BATCH as i64).then_some(())
    })
    .await;
    let stalled = cursor(&system).await;
    assert!(
        stalled <= at_crash,
        "nothing is published while NATS is down"
    );

    // Back on the same port and store: the client reconnects and the relay catches up.
    let server = OwnServer::start(port, store.path()).await;
    let written_while_down = outbox(&system).await.last().expect("events").seq;
    eventually(
        "the events written while NATS was down published",
        async || (cursor(&system).await >= written_while_down).then_some(()),
    )
    .await;
    stop_daemon(&mut ctx).await;

    let published_up_to = cursor(&system).await;
    let events = outbox(&system).await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(&names.stream).await.expect("the stream");
    let info = stream.info().await.expect("stream info").clone();
    let mut stored = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("stored message");
        stored.push(
            message
                .headers
                .get(MSG_ID_HEADER)
                .expect("Nats-Msg-Id")
                .to_string(),
        );
    }
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        distinct.len(),
        stored.len(),
        "a duplicate reached the stream"
    );
    let published: Vec<String> = events
        .iter()
        .filter(|e| e.seq <= published_up_to)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        &stored[..published.len()],
        published.as_slice(),
        "the stream holds every event once, in outbox order"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn invalid_settings_stop_the_daemon_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = actors::db::testing::fresh_url(dir.path()).await;
    let mut config = config_on(&database_url, &nats_url(), &Names::new());
    config.events.nats.url = Some("nats://stella:hunter2@127.0.0.1:4222".into());
    daemon::install_crypto_provider();
    let error = daemon::start(config)
        .await
        .err()
        .expect("credentials in the URL are refused");
    let chain = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(chain.contains("events.nats"), "{chain}");
    assert!(!chain.contains("hunter2"), "{chain}");
}

// === incident members on NATS ===

const OPENED: &str = "dev.stellaops.integration.incident.opened";
const RESOLVED: &str = "dev.stellaops.integration.incident.resolved";
/// Integrations behind the provider that goes down: more than `min_members`.
const FLEET: usize = 8;

/// Every message of a stream, as (CloudEvents id, type), in stream order.
async fn stream_events(js: &async_nats::jetstream::Context, name: &str) -> Vec<(String, String)> {
    let mut stream = js.get_stream(name).await.expect("the relay's stream");
    let info = stream.info().await.expect("stream info").clone();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("stored message");
        let body: Value = serde_json::from_slice(&message.payload).expect("a CloudEvent");
        out.push((
            body["id"].as_str().expect("an id").to_owned(),
            body["type"].as_str().expect("a type").to_owned(),
        ));
    }
    out
}

/// `FLEET` registries of tenant A behind one provider on loopback, checked every 2 s, that goes
/// down until an incident opens and comes back until it is resolved, with the relay publishing
/// to the machine's JetStream with `incident_members = members`. Returns the outbox events
/// written from the outage on, and the stream's messages of those events, in stream order.
async fn an_outage_on_nats(members: IncidentMembers) -> (Vec<StoredEvent>, Vec<(String, String)>) {
    let url = nats_url();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS with JetStream must answer at {url} (run scripts/nats-up): {e}")
        });
    let js = async_nats::jetstream::new(client);
    delete_stale_streams(&js).await;
    let names = Names::new();
    let mut provider = Provider::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let ctx = incidents::daemon(&secrets, |c| {
        c.events.nats = NatsSettings {
            url: Some(url.clone()),
            subject_prefix: names.prefix.clone(),
            stream: names.stream.clone(),
            max_age_seconds: 3600,
            batch: BATCH,
            timeout_ms: 2000,
            poll_interval_ms: 200,
            backoff_min_ms: 100,
            backoff_max_ms: 1000,
            incident_members: members,
            ..NatsSettings::default()
        };
    })
    .await;
    let system = system_store(&ctx.database_url).await;
    for i in 0..FLEET {
        incidents::registry(
            &ctx,
            WRITER_A,
            &format!("registry-{i}"),
            &provider.base_url(),
        )
        .await;
    }
    let all_healthy = async || {
        let page = ctx
            .get("/api/v1/integrations?limit=100", READER_A)
            .await
            .ok(200)
            .clone();
        let items = page["items"].as_array().expect("items").clone();
        (items.len() == FLEET && items.iter().all(|i| i["status"] == "healthy")).then_some(())
    };
    eventually("the fleet is healthy", all_healthy).await;
    // Everything written so far is published (or left to an incident) before the outage.
    let before = eventually("the relay caught up", async || {
        let last = outbox(&system).await.last().map_or(0, |e| e.seq);
        (cursor(&system).await >= last).then_some(last)
    })
    .await;

    provider.down();
    eventually("one incident open with the whole fleet", async || {
        let open = ctx
            .get("/api/v1/incidents?state=open", READER_A)
            .await
            .ok(200)
            .clone();
        let items = open["items"].as_array().expect("items").clone();
        (items.len() == 1 && items[0]["memberCount"] == FLEET).then_some(())
    })
    .await;
    provider.up().await;
    eventually("the incident resolved", async || {
        let all = ctx.get("/api/v1/incidents", READER_A).await.ok(200).clone();
        let items = all["items"].as_array().expect("items").clone();
        (items.len() == 1 && items[0]["state"] == "resolved").then_some(())
    })
    .await;
    eventually("the fleet is healthy again", all_healthy).await;
    // The relay has passed every event written until now.
    let events = eventually("the relay caught up again", async || {
        let events = outbox(&system).await;
        let last = events.last().map_or(0, |e| e.seq);
        (cursor(&system).await >= last).then_some(events)
    })
    .await;
    let ours: Vec<StoredEvent> = events.into_iter().filter(|e| e.seq > before).collect();
    let ids: HashSet<String> = ours.iter().map(|e| e.id.to_string()).collect();
    let stream: Vec<(String, String)> = stream_events(&js, &names.stream)
        .await
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect();
    js.delete_stream(&names.stream)
        .await
        .expect("delete the stream");
    ctx.cleanup().await;
    (ours, stream)
}

/// The outbox's ids of `events`, in outbox order.
fn ids_of<'a>(events: impl Iterator<Item = &'a StoredEvent>) -> Vec<String> {
    events.map(|e| e.id.to_string()).collect()
}

fn count(stream: &[(String, String)], event_type: &str) -> usize {
    stream.iter().filter(|(_, t)| t == event_type).count()
}

#[tokio::test]
async fn with_members_suppressed_nats_receives_the_incident_and_no_member_status_change() {
    let (events, stream) = an_outage_on_nats(IncidentMembers::Suppress).await;
    let members: Vec<&StoredEvent> = events.iter().filter(|e| e.incident_id.is_some()).collect();
    // Every member failed, and recovered, while the incident was open.
    assert!(
        members.len() >= 2 * FLEET,
        "{} member events in the outbox",
        members.len()
    );
    assert_eq!(count(&stream, OPENED), 1, "{stream:?}");
    assert_eq!(count(&stream, RESOLVED), 1, "{stream:?}");
    let health: Vec<&(String, String)> = stream
        .iter()
        .filter(|(_, t)| t.starts_with("dev.stellaops.integration.health."))
        .collect();
    assert!(
        health.is_empty(),
        "member status changes on NATS: {health:?}"
    );
    // Exactly the events that are not a member's, once each, in outbox order.
    let expected = ids_of(events.iter().filter(|e| e.incident_id.is_none()));
    let got: Vec<String> = stream.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn with_members_delivered_nats_receives_the_incident_and_every_member_status_change() {
    let (events, stream) = an_outage_on_nats(IncidentMembers::Deliver).await;
    let members = events.iter().filter(|e| e.incident_id.is_some()).count();
    assert!(
        members >= 2 * FLEET,
        "{members} member events in the outbox"
    );
    assert_eq!(count(&stream, OPENED), 1, "{stream:?}");
    assert_eq!(count(&stream, RESOLVED), 1, "{stream:?}");
    let health = stream
        .iter()
        .filter(|(_, t)| t.starts_with("dev.stellaops.integration.health."))
        .count();
    assert_eq!(
        health,
        events
            .iter()
            .filter(|e| e
                .event_type
                .starts_with("dev.stellaops.integration.health."))
            .count()
    );
    assert!(health >= members);
    // Every event, members' included, once each, in outbox order.
    let got: Vec<String> = stream.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, ids_of(events.iter()));
}
