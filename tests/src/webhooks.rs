//! Webhook subscriptions through the API, and deliveries to a receiver on loopback: an outage
//! and recovery, ordering per integration, signatures, tenant isolation, dead-lettering, the
//! SSRF guard.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::sinks::webhooks::signature;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::context::{ADMIN_A, READER_A, TENANT_A, TENANT_B, TestContext, WRITER_A, WRITER_B};

const SECRET_A: &str = "whsec_tenant-a-signing-secret";
const SECRET_B: &str = "whsec_tenant-b-signing-secret";
/// A public address that needs no DNS; nothing is ever delivered to it in these tests.
const PUBLIC_TARGET: &str = "https://93.184.215.14/hook";

// === the receiver ===

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    event_id: String,
    timestamp: i64,
    signature: String,
    idempotency_key: String,
    content_type: String,
    batch_size: String,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    /// The status every request is answered with.
    answer: AtomicU16,
    got: Mutex<Vec<Received>>,
}

/// A webhook consumer on a free loopback port that records every request.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

#[handler]
async fn hook(req: &Request, body: Vec<u8>, state: Data<&Arc<ReceiverState>>) -> Response {
    let header = |name: &str| req.header(name).map(str::to_owned).unwrap_or_default();
    let answered = state.answer.load(Ordering::SeqCst);
    state.got.lock().unwrap().push(Received {
        path: req.uri().path().to_owned(),
        event_id: header(signature::EVENT_ID_HEADER),
        timestamp: header(signature::TIMESTAMP_HEADER).parse().unwrap_or(-1),
        signature: header(signature::SIGNATURE_HEADER),
        idempotency_key: header(signature::IDEMPOTENCY_KEY_HEADER),
        content_type: header("content-type"),
        batch_size: header(signature::BATCH_SIZE_HEADER),
        body,
        answered,
    });
    Response::builder()
        .status(poem::http::StatusCode::from_u16(answered).unwrap())
        .finish()
}

impl Receiver {
    async fn start(answer: u16) -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let state = Arc::new(ReceiverState {
            answer: AtomicU16::new(answer),
            got: Mutex::default(),
        });
        let app = Route::new()
            .at("/*path", poem::post(hook))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, status: u16) {
        self.state.answer.store(status, Ordering::SeqCst);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        let got = self.state.got.lock().unwrap();
        got.iter().filter(|r| r.path == path).cloned().collect()
    }
}

// === helpers ===

/// A daemon whose monitors flip status at every check (one event a second per flapping
/// integration), that lets deliveries go to 127.0.0.1, retries fast, and resolves signing
/// secrets from files in `secrets`.
async fn daemon(secrets: &tempfile::TempDir, dead_letter_after_seconds: u64) -> TestContext {
    for (tenant, name, secret) in [
        (TENANT_A, "hook-a", SECRET_A),
        (TENANT_B, "hook-b", SECRET_B),
    ] {
        let folder = secrets.path().join("tenants").join(tenant);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), secret).unwrap();
    }
    let dir = secrets.path().to_owned();
    TestContext::start_with(move |c| {
        c.health.interval_seconds = 1;
        c.health.degraded_after = 1;
        c.health.unhealthy_after = 1;
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
        c.events.webhooks.dead_letter_after_seconds = dead_letter_after_seconds;
        c.connectors.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
        c.connectors.secrets.secrets_dir = Some(dir);
    })
    .await
}

async fn flapping(ctx: &TestContext, key: &str, name: &str) -> String {
    let body = json!({"type": "inmemory", "name": name,
        "config": {"behaviour": "flapping", "pattern": "hu"}});
    ctx.post("/api/v1/integrations", key, &body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn pause(ctx: &TestContext, key: &str, id: &str) {
    ctx.put(
        &format!("/api/v1/integrations/{id}/monitoring"),
        key,
        &json!({"paused": true, "intervalSeconds": null}),
        &[],
    )
    .await
    .ok(200);
}

/// Subscribes `key`'s tenant, signing with the file `secret` of its folder.
async fn subscribe(ctx: &TestContext, key: &str, url: &str, secret: &str) -> String {
    let tenant = if key == WRITER_B { TENANT_B } else { TENANT_A };
    let body = json!({"name": "receiver", "targetUrl": url,
        "secretAuthRef": format!("authref://file/tenants/{tenant}/{secret}")});
    ctx.post("/api/v1/webhook-subscriptions", key, &body)
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deliveries(ctx: &TestContext, key: &str, sub: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/webhook-subscriptions/{sub}/deliveries?limit=200{query}");
    ctx.get(&path, key).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls until `done` holds, every 100 ms for at most `seconds`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One outbox row.
#[derive(Debug, Clone)]
struct Outboxed {
    seq: i64,
    id: Uuid,
    tenant: String,
    integration: Option<Uuid>,
}

/// The whole outbox, in `seq` order, read straight from the database (all tenants).
async fn outbox(ctx: &TestContext) -> Vec<Outboxed> {
    let db = Database::connect(ctx.database_url.as_str()).await.unwrap();
    let backend = db.get_database_backend();
    let txn = db.begin().await.unwrap();
    if backend == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
            .await
            .unwrap();
    }
    let rows = txn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT seq, id, tenant_id, integration_id FROM events ORDER BY seq",
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    db.close().await.ok();
    rows.iter()
        .map(|r| Outboxed {
            seq: r.try_get("", "seq").unwrap(),
            id: r.try_get("", "id").unwrap(),
            tenant: r.try_get("", "tenant_id").unwrap(),
            integration: r.try_get("", "integration_id").unwrap(),
        })
        .collect()
}

// === tests ===

#[tokio::test]
async fn subscriptions_are_managed_audited_and_per_tenant() {
    let ctx = TestContext::start_with(|c| c.health.enabled = false).await;
    let body = json!({"name": "pager", "targetUrl": PUBLIC_TARGET,
        "eventTypes": ["dev.stellaops.integration.health.*"],
        "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"});
    let created = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
        .await;
    let sub = created.ok(201).clone();
    let id = sub["id"].as_str().unwrap();
    let path = format!("/api/v1/webhook-subscriptions/{id}");
    assert_eq!(created.header("location"), Some(path.as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(sub["enabled"], true);
    assert_eq!(sub["integrationIds"], json!([]));
    assert_eq!(
        sub["secretAuthRef"],
        "authref://vault/secret/tenants/tenant-a/hooks#pager"
    );

    let read = ctx.get(&path, READER_A).await;
    assert_eq!(read.ok(200)["name"], "pager");
    assert_eq!(read.header("etag"), Some("\"1\""));
    ctx.post("/api/v1/webhook-subscriptions", READER_A, &body)
        .await
        .problem(403);
    ctx.delete(&path, READER_A, &[]).await.problem(403);

    for n in 0..2 {
        let more = json!({"name": format!("more-{n}"), "targetUrl": PUBLIC_TARGET,
            "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hook"});
        ctx.post("/api/v1/webhook-subscriptions", WRITER_A, &more)
            .await
            .ok(201);
    }
    let first = ctx
        .get("/api/v1/webhook-subscriptions?limit=2", READER_A)
        .await
        .ok(200)
        .clone();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["id"], id, "oldest first");
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = ctx
        .get(
            &format!("/api/v1/webhook-subscriptions?limit=2&cursor={cursor}"),
            READER_A,
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["nextCursor"], Value::Null);

    let change = json!({"name": "pager-2", "targetUrl": PUBLIC_TARGET, "enabled": false,
        "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"});
    ctx.put(&path, WRITER_A, &change, &[("If-Match", "\"5\"")])
        .await
        .problem(412);
    let updated = ctx
        .put(&path, WRITER_A, &change, &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(updated.ok(200)["version"], 2);
    assert_eq!(updated.body["enabled"], false);
    assert_eq!(updated.body["eventTypes"], json!([]));
    assert_eq!(updated.header("etag"), Some("\"2\""));

    // Tenant B finds nothing of A's.
    ctx.get(&path, WRITER_B).await.problem(404);
    ctx.put(&path, WRITER_B, &change, &[]).await.problem(404);
    ctx.delete(&path, WRITER_B, &[]).await.problem(404);
    ctx.get(&format!("{path}/deliveries"), WRITER_B)
        .await
        .problem(404);
    ctx.post(&format!("{path}/test"), WRITER_B, &json!({}))
        .await
        .problem(404);
    let theirs = ctx.get("/api/v1/webhook-subscriptions", WRITER_B).await;
    assert_eq!(theirs.ok(200)["items"], json!([]));

    ctx.delete(&path, WRITER_A, &[("If-Match", "\"1\"")])
        .await
        .problem(412);
    let deleted = ctx.delete(&path, WRITER_A, &[]).await;
    assert_eq!(deleted.status, 204);
    ctx.get(&path, READER_A).await.problem(404);
    ctx.get(&format!("{path}/deliveries"), READER_A)
        .await
        .problem(404);

    let audit = ctx.get("/api/v1/audit", ADMIN_A).await.ok(200).clone();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook_subscription.delete",
            "webhook_subscription.update",
            "webhook_subscription.create",
            "webhook_subscription.create",
            "webhook_subscription.create",
        ]
    );
    assert_eq!(audit["items"][0]["details"]["before"]["name"], "pager-2");
    ctx.cleanup().await;
}

/// Clients written against the first name of the resource keep working: the old path, the
/// old field name in and out, the old `Location`, and a deprecation notice on every answer.
#[tokio::test]
async fn the_deprecated_alert_subscriptions_path_still_works_under_its_old_names() {
    const OLD: &str = "/api/v1/alert-subscriptions";
    let ctx = TestContext::start_with(|c| c.health.enabled = false).await;
    let secret = "authref://vault/secret/tenants/tenant-a/hooks#pager";
    let body = json!({"name": "legacy", "targetUrl": PUBLIC_TARGET, "secretRef": secret});
    let created = ctx.post(OLD, WRITER_A, &body).await;
    let sub = created.ok(201).clone();
    let id = sub["id"].as_str().unwrap();
    let path = format!("{OLD}/{id}");
    assert_eq!(sub["secretRef"], secret);
    assert!(sub.get("secretAuthRef").is_none(), "{sub}");
    assert_eq!(created.header("location"), Some(path.as_str()));
    assert_eq!(created.header("deprecation"), Some("@1796515200"));
    assert_eq!(
        created.header("link"),
        Some("</api/v1/webhook-subscriptions>; rel=\"successor-version\"")
    );

    // The same subscription under both names.
    let new = ctx
        .get(&format!("/api/v1/webhook-subscriptions/{id}"), READER_A)
        .await;
    assert_eq!(new.ok(200)["secretAuthRef"], secret);
    assert!(new.header("deprecation").is_none());
    let listed = ctx.get(&format!("{OLD}?limit=1"), READER_A).await;
    assert_eq!(listed.ok(200)["items"][0]["secretRef"], secret);

    let change = json!({"name": "legacy-2", "targetUrl": PUBLIC_TARGET, "secretRef": secret});
    let updated = ctx
        .put(&path, WRITER_A, &change, &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(updated.ok(200)["name"], "legacy-2");
    assert_eq!(updated.body["secretRef"], secret);
    // Errors are the operations' own, naming the field as the current API does.
    let bad = json!({"name": "x", "targetUrl": PUBLIC_TARGET, "secretRef": "whsec_plain"});
    let refused = ctx.post(OLD, WRITER_A, &bad).await;
    assert_eq!(refused.problem(422)["errors"][0]["field"], "secretAuthRef");
    // Another tenant finds nothing under the old name either.
    ctx.get(&path, WRITER_B).await.problem(404);
    assert_eq!(ctx.delete(&path, WRITER_A, &[]).await.status, 204);
    ctx.get(&path, READER_A).await.problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn bad_subscriptions_are_4xx_naming_the_field() {
    let ctx = TestContext::start_with(|c| c.health.enabled = false).await;
    let integration = ctx.create(WRITER_A, "real", "inmemory").await;
    let ok = |patch: Value| {
        let mut body = json!({"name": "n", "targetUrl": PUBLIC_TARGET,
            "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hook"});
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (ok(json!({"name": ""})), "name"),
        (ok(json!({"targetUrl": "not a url"})), "targetUrl"),
        (
            ok(json!({"targetUrl": "ftp://93.184.215.14/x"})),
            "targetUrl",
        ),
        (
            ok(json!({"targetUrl": "https://alice:pw@93.184.215.14/x"})),
            "targetUrl",
        ),
        (
            ok(json!({"targetUrl": "https://93.184.215.14/x?token=abc"})),
            "targetUrl",
        ),
        // The SSRF guard, resolving at creation: loopback, private, link-local, names too.
        (
            ok(json!({"targetUrl": "http://127.0.0.1:9/hook"})),
            "targetUrl",
        ),
        (
            ok(json!({"targetUrl": "http://10.0.0.5/hook"})),
            "targetUrl",
        ),
        (
            ok(json!({"targetUrl": "http://169.254.169.254/latest"})),
            "targetUrl",
        ),
        (ok(json!({"targetUrl": "http://[::1]:9/hook"})), "targetUrl"),
        (
            ok(json!({"targetUrl": "http://localhost:9/hook"})),
            "targetUrl",
        ),
        (
            ok(json!({"eventTypes": ["dev.stellaops.integration.nope"]})),
            "eventTypes[0]",
        ),
        (
            ok(json!({"eventTypes": ["dev.stellaops.integration.health.changed", "x.*"]})),
            "eventTypes[1]",
        ),
        (
            ok(json!({"integrationIds": [integration["id"], Uuid::now_v7()]})),
            "integrationIds[1]",
        ),
        (
            ok(json!({"secretAuthRef": "whsec_plaintext-secret"})),
            "secretAuthRef",
        ),
        (
            ok(json!({"secretAuthRef": "authref://s3/bucket"})),
            "secretAuthRef",
        ),
    ];
    for (body, field) in cases {
        let answer = ctx
            .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
            .await;
        let problem = answer.problem(422);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors for {body}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}");
        let text = answer.body.to_string();
        for leaked in ["pw@", "abc", "whsec_plaintext-secret"] {
            assert!(!text.contains(leaked), "{leaked} echoed: {text}");
        }
    }
    let refused = ctx
        .post(
            "/api/v1/webhook-subscriptions",
            WRITER_A,
            &ok(json!({"targetUrl": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("allow_private_networks")
    );
    // A raw secret is not a field of a subscription: refused, named, not echoed.
    for field in ["secret", "signingSecret"] {
        let answer = ctx
            .post(
                "/api/v1/webhook-subscriptions",
                WRITER_A,
                &ok(json!({ field: "whsec_raw-value" })),
            )
            .await;
        let problem = answer.problem(400);
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
        assert!(!answer.body.to_string().contains("whsec_raw-value"));
    }
    ctx.get("/api/v1/webhook-subscriptions?cursor=forged", READER_A)
        .await
        .problem(400);
    let body = ok(json!({}));
    let id = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ctx.get(
        &format!("/api/v1/webhook-subscriptions/{id}/deliveries?status=lost"),
        READER_A,
    )
    .await
    .problem(400);
    ctx.post(
        &format!("/api/v1/webhook-subscriptions/{id}/deliveries/12345/retry"),
        WRITER_A,
        &json!({}),
    )
    .await
    .problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_consumer_back_from_an_outage_gets_every_event_in_order_signed_and_only_its_tenants() {
    let secrets = tempfile::tempdir().unwrap();
    let ctx = daemon(&secrets, 3600).await;
    let receiver = Receiver::start(503).await;
    let sub_a = subscribe(&ctx, WRITER_A, &receiver.url("/a"), "hook-a").await;
    let sub_b = subscribe(&ctx, WRITER_B, &receiver.url("/b"), "hook-b").await;
    let a1 = flapping(&ctx, WRITER_A, "a1").await;
    let a2 = flapping(&ctx, WRITER_A, "a2").await;
    let b1 = flapping(&ctx, WRITER_B, "b1").await;

    // The consumer is down: deliveries pile up behind the first of each integration.
    let held = eventually(30, "deliveries held during the outage", async || {
        let rows = deliveries(&ctx, READER_A, &sub_a, "&status=pending").await;
        let retried = rows
            .iter()
            .any(|d| d["attempts"].as_i64().unwrap() >= 2 && d["lastStatusCode"] == 503);
        (rows.len() >= 6 && retried).then_some(rows)
    })
    .await;
    assert!(
        held.iter()
            .all(|d| d["lastError"].is_null() || d["lastStatusCode"] == 503),
        "{held:?}"
    );
    assert!(receiver.got("/a").iter().all(|r| r.answered == 503));

    // Back up: everything goes out, then the integrations stop producing events.
    receiver.answer(200);
    eventually(30, "new events delivered after recovery", async || {
        let delivered = deliveries(&ctx, READER_A, &sub_a, "&status=delivered").await;
        (delivered.len() >= held.len() + 2).then_some(())
    })
    .await;
    pause(&ctx, WRITER_A, &a1).await;
    pause(&ctx, WRITER_A, &a2).await;
    pause(&ctx, WRITER_B, &b1).await;
    let outbox = eventually(30, "every outbox event delivered", async || {
        // Once every integration reads `paused`, its last event (the pause) is committed:
        // the snapshot below then holds everything the receiver can still get.
        for (key, id) in [(READER_A, &a1), (READER_A, &a2), (WRITER_B, &b1)] {
            let status = ctx.get(&format!("/api/v1/integrations/{id}"), key).await;
            if status.ok(200)["status"] != "paused" {
                return None;
            }
        }
        let outbox = outbox(&ctx).await;
        let accepted: std::collections::HashSet<String> = receiver
            .state
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.event_id.clone())
            .collect();
        let pending_a = deliveries(&ctx, READER_A, &sub_a, "&status=pending").await;
        let pending_b = deliveries(&ctx, WRITER_B, &sub_b, "&status=pending").await;
        let all_in = outbox.iter().all(|e| accepted.contains(&e.id.to_string()));
        (all_in && pending_a.is_empty() && pending_b.is_empty() && outbox.len() >= 10)
            .then_some(outbox)
    })
    .await;

    for (path, tenant, secret, sub, key) in [
        ("/a", TENANT_A, SECRET_A, &sub_a, READER_A),
        ("/b", TENANT_B, SECRET_B, &sub_b, WRITER_B),
    ] {
        let mine: Vec<&Outboxed> = outbox.iter().filter(|e| e.tenant == tenant).collect();
        let seq_of: HashMap<String, (i64, Option<Uuid>)> = mine
            .iter()
            .map(|e| (e.id.to_string(), (e.seq, e.integration)))
            .collect();
        let got = receiver.got(path);
        // Only the tenant's own events, each signed with the tenant's secret.
        for r in &got {
            assert!(
                seq_of.contains_key(&r.event_id),
                "{path} got a foreign event {r:?}"
            );
            let body = r.json();
            assert_eq!(body["tenant"], tenant);
            assert_eq!(body["id"], r.event_id);
            assert_eq!(r.idempotency_key, r.event_id);
            assert_eq!(r.content_type, signature::CONTENT_TYPE);
            assert!(
                signature::verify(secret.as_bytes(), r.timestamp, &r.body, &r.signature),
                "bad signature on {r:?}"
            );
        }
        // Every event of the tenant was accepted, and per integration no event was even
        // attempted before the one before it was delivered.
        let accepted: std::collections::HashSet<&str> = got
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.event_id.as_str())
            .collect();
        assert_eq!(
            accepted.len(),
            mine.len(),
            "{path}: not every event delivered"
        );
        let mut last_seq: HashMap<Option<Uuid>, i64> = HashMap::new();
        for r in &got {
            let (seq, integration) = seq_of[&r.event_id];
            let last = last_seq.entry(integration).or_insert(seq);
            assert!(seq >= *last, "{path}: out of order for {integration:?}");
            *last = seq;
        }
        // The API agrees. Events appended after the snapshot (the pauses' own status changes
        // reach the outbox asynchronously) may have deliveries too; the snapshot's each have
        // exactly one, delivered.
        let rows = deliveries(&ctx, key, sub, "").await;
        let of_snapshot: Vec<&Value> = rows
            .iter()
            .filter(|d| seq_of.contains_key(d["eventId"].as_str().unwrap()))
            .collect();
        assert_eq!(of_snapshot.len(), mine.len(), "{rows:?}");
        assert!(of_snapshot.iter().all(|d| d["status"] == "delivered"));
    }
    assert!(outbox.iter().any(|e| e.tenant == TENANT_B));
    ctx.cleanup().await;
}

#[tokio::test]
async fn deliveries_dead_letter_after_the_configured_time_and_can_be_retried() {
    let secrets = tempfile::tempdir().unwrap();
    let ctx = daemon(&secrets, 2).await;
    let receiver = Receiver::start(500).await;
    let sub = subscribe(&ctx, WRITER_A, &receiver.url("/a"), "hook-a").await;
    let integration = flapping(&ctx, WRITER_A, "dying").await;
    let dead = eventually(30, "two dead deliveries", async || {
        let rows = deliveries(&ctx, READER_A, &sub, "&status=dead").await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    pause(&ctx, WRITER_A, &integration).await;
    // Newest first: the oldest is the last.
    let first = dead.last().unwrap();
    assert_eq!(first["lastStatusCode"], 500);
    assert!(first["attempts"].as_i64().unwrap() >= 2, "{first}");
    let created =
        chrono::DateTime::parse_from_rfc3339(first["createdAt"].as_str().unwrap()).unwrap();
    let last =
        chrono::DateTime::parse_from_rfc3339(first["lastAttemptAt"].as_str().unwrap()).unwrap();
    assert!(
        last - created >= chrono::Duration::seconds(2)
            && last - created < chrono::Duration::seconds(10),
        "dead after {}",
        last - created
    );
    assert_eq!(first["nextAttemptAt"], Value::Null);

    // The consumer is fixed: a test event goes through, signed; a dead delivery is retried by hand.
    receiver.answer(204);
    let test = ctx
        .post(
            &format!("/api/v1/webhook-subscriptions/{sub}/test"),
            WRITER_A,
            &json!({}),
        )
        .await;
    let test = test.ok(200).clone();
    assert_eq!(test["delivered"], true, "{test}");
    assert_eq!(test["statusCode"], 204);
    let sent = receiver
        .got("/a")
        .into_iter()
        .find(|r| r.event_id == test["eventId"])
        .unwrap();
    assert_eq!(sent.json()["type"], "dev.stellaops.webhook.test");
    assert!(signature::verify(
        SECRET_A.as_bytes(),
        sent.timestamp,
        &sent.body,
        &sent.signature
    ));

    let retry = format!(
        "/api/v1/webhook-subscriptions/{sub}/deliveries/{}/retry",
        first["id"]
    );
    ctx.post(&retry, READER_A, &json!({})).await.problem(403);
    ctx.post(&retry, WRITER_B, &json!({})).await.problem(404);
    let requeued = ctx.post(&retry, WRITER_A, &json!({})).await;
    assert_eq!(requeued.ok(200)["status"], "pending");
    assert_eq!(requeued.body["attempts"], 0);
    eventually(15, "the retried delivery delivered", async || {
        let rows = deliveries(&ctx, READER_A, &sub, "&status=delivered").await;
        rows.iter().any(|d| d["id"] == first["id"]).then_some(())
    })
    .await;
    ctx.post(&retry, WRITER_A, &json!({})).await.problem(409);
    let audit = ctx.get("/api/v1/audit", ADMIN_A).await.ok(200).clone();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "webhook_subscription.delivery_retry")
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_batched_subscription_gets_signed_batches_in_order_per_integration() {
    let secrets = tempfile::tempdir().unwrap();
    let ctx = daemon(&secrets, 3600).await;
    let receiver = Receiver::start(200).await;
    // Out of range: 422 naming the field.
    for (batch, field) in [
        (json!({"maxEvents": 0, "maxDelayMs": 10}), "batch.maxEvents"),
        (
            json!({"maxEvents": 1001, "maxDelayMs": 10}),
            "batch.maxEvents",
        ),
        (
            json!({"maxEvents": 5, "maxDelayMs": 60001}),
            "batch.maxDelayMs",
        ),
    ] {
        let body = json!({"name": "batched", "targetUrl": receiver.url("/batch"),
            "secretAuthRef": format!("authref://file/tenants/{TENANT_A}/hook-a"),
            "batch": batch});
        let problem = ctx
            .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
            .await
            .ok(422)
            .clone();
        assert!(problem.to_string().contains(field), "{problem}");
    }
    // Five events per POST: the delay is long enough that only full batches go.
    let body = json!({"name": "batched", "targetUrl": receiver.url("/batch"),
        "secretAuthRef": format!("authref://file/tenants/{TENANT_A}/hook-a"),
        "batch": {"maxEvents": 5, "maxDelayMs": 60000}});
    let created = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
        .await
        .ok(201)
        .clone();
    assert_eq!(
        created["batch"],
        json!({"maxEvents": 5, "maxDelayMs": 60000})
    );
    let sub = created["id"].as_str().unwrap().to_owned();
    let read = ctx
        .get(&format!("/api/v1/webhook-subscriptions/{sub}"), READER_A)
        .await
        .ok(200)
        .clone();
    assert_eq!(read["batch"]["maxEvents"], 5);
    let a1 = flapping(&ctx, WRITER_A, "a1").await;
    let a2 = flapping(&ctx, WRITER_A, "a2").await;
    let a3 = flapping(&ctx, WRITER_A, "a3").await;

    let posts = eventually(60, "three batches", async || {
        let got = receiver.got("/batch");
        (got.len() >= 3).then_some(got)
    })
    .await;
    for id in [&a1, &a2, &a3] {
        pause(&ctx, WRITER_A, id).await;
    }
    let outbox = outbox(&ctx).await;
    let seq_of: HashMap<String, (i64, Option<Uuid>)> = outbox
        .iter()
        .map(|e| (e.id.to_string(), (e.seq, e.integration)))
        .collect();
    let mut last_seq: HashMap<Option<Uuid>, i64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for post in &posts {
        assert_eq!(post.content_type, signature::BATCH_CONTENT_TYPE);
        assert!(
            signature::verify(
                SECRET_A.as_bytes(),
                post.timestamp,
                &post.body,
                &post.signature
            ),
            "one signature over the whole body: {post:?}"
        );
        assert!(post.idempotency_key.is_empty() && post.event_id.is_empty());
        let events = post.json();
        let events = events.as_array().expect("a JSON array");
        assert_eq!(events.len(), 5, "one POST with five events");
        assert_eq!(post.batch_size, "5");
        for event in events {
            assert_eq!(event["specversion"], "1.0");
            assert_eq!(event["tenant"], TENANT_A);
            let id = event["id"].as_str().unwrap().to_owned();
            let (seq, integration) = seq_of[&id];
            let last = last_seq.entry(integration).or_insert(seq);
            assert!(seq >= *last, "out of order for {integration:?}");
            *last = seq;
            assert!(seen.insert(id), "an accepted event sent twice");
        }
    }
    let rows = deliveries(&ctx, READER_A, &sub, "&status=delivered").await;
    assert!(rows.len() >= 15, "{}", rows.len());
    ctx.cleanup().await;
}
