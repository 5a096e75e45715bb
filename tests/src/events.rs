//! Health events over SSE (`GET /api/v1/events`) and maintenance windows, through the API.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::context::{READER_A, TestContext, WRITER_A, WRITER_B};

/// A daemon whose in-memory integrations change status on every check, each change an event.
async fn flipping() -> TestContext {
    TestContext::start_with(|c| {
        c.health.interval_seconds = 1;
        c.health.jitter = 0.0;
        c.health.backoff_min_seconds = 1;
        c.health.backoff_max_seconds = 1;
        c.health.degraded_after = 1;
        c.health.unhealthy_after = 1;
        c.health.healthy_after = 1;
        c.health.writer_flush_ms = 20;
        c.events.alerts.flap_transitions = 100_000;
    })
    .await
}

async fn create(ctx: &TestContext, key: &str, name: &str, config: Value) -> String {
    let body = json!({"type": "inmemory", "name": name, "config": config});
    let created = ctx.post("/api/v1/integrations", key, &body).await;
    created.ok(201)["id"].as_str().unwrap().to_owned()
}

/// One server-sent event: its id and its JSON data.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: i64,
    event: Value,
}

/// A client of the event stream, parsing `text/event-stream` by hand.
struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Sse {
    async fn open(ctx: &TestContext, key: &str, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(ctx.url(&format!("/api/v1/events{query}")))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), false) = (id, data.is_empty()) {
                    return Some(Message {
                        id,
                        event: serde_json::from_str(&data).unwrap(),
                    });
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(chunk)) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next `n` events, failing if they do not come within 20 s.
    async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        while out.len() < n {
            let message = self.next(Duration::from_secs(20)).await;
            out.push(message.unwrap_or_else(|| panic!("only {} of {n} events came", out.len())));
        }
        out
    }
}

#[tokio::test]
async fn the_stream_resumes_with_exactly_the_missed_events() {
    let ctx = flipping().await;
    let id = create(
        &ctx,
        WRITER_A,
        "flip",
        json!({"behaviour": "flapping", "pattern": "uh"}),
    )
    .await;
    let mut live = Sse::open(&ctx, READER_A, "", None).await;
    let first = live.take(3).await;
    for m in &first {
        assert_eq!(m.event["specversion"], "1.0");
        assert_eq!(m.event["subject"], id);
        assert_eq!(m.event["tenant"], "tenant-a");
        assert!(
            m.event["type"]
                .as_str()
                .unwrap()
                .starts_with("dev.stellaops.integration.health.")
        );
    }
    assert!(first.windows(2).all(|w| w[0].id < w[1].id));
    drop(live);
    let seen = first[2].id;
    // Events keep coming while the client is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut resumed = Sse::open(&ctx, READER_A, "", Some(seen)).await;
    let missed = resumed.take(4).await;
    // The whole log, read from the start, is the reference: the resumed stream continues it
    // right after `seen`, with nothing skipped or repeated.
    let mut all = Sse::open(&ctx, READER_A, "?after=0", None).await;
    let log = all.take(7).await;
    let at = log
        .iter()
        .position(|m| m.id == seen)
        .expect("seen is in the log");
    assert_eq!(&log[at + 1..at + 5], &missed[..]);
    assert_eq!(
        &log[..3],
        &first[..],
        "the first events are the start of the log"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_events_and_filters_apply() {
    let ctx = flipping().await;
    let a = create(
        &ctx,
        WRITER_A,
        "a",
        json!({"behaviour": "flapping", "pattern": "uh"}),
    )
    .await;
    let b = create(
        &ctx,
        WRITER_B,
        "b",
        json!({"behaviour": "flapping", "pattern": "uh"}),
    )
    .await;
    let mut stream_a = Sse::open(&ctx, READER_A, "?after=0", None).await;
    let mut stream_b = Sse::open(&ctx, WRITER_B, "?after=0", None).await;
    for m in stream_a.take(6).await {
        assert_eq!(m.event["subject"], a);
        assert_eq!(m.event["tenant"], "tenant-a");
    }
    for m in stream_b.take(6).await {
        assert_eq!(m.event["subject"], b);
        assert_eq!(m.event["tenant"], "tenant-b");
    }
    // Another tenant's integration is not found, not filtered to nothing.
    let other = ctx
        .get(&format!("/api/v1/events?integrationId={b}"), READER_A)
        .await;
    other.problem(404);
    // Type filters: exact types and dotted prefixes.
    let recovered = "dev.stellaops.integration.health.recovered";
    let mut only = Sse::open(&ctx, READER_A, &format!("?after=0&type={recovered}"), None).await;
    for m in only.take(2).await {
        assert_eq!(m.event["type"], recovered);
    }
    let bad = ctx
        .get("/api/v1/events?type=dev.stellaops.nope", READER_A)
        .await;
    assert_eq!(bad.problem(422)["errors"][0]["field"], "type");
    let bad = ctx
        .call(
            reqwest::Method::GET,
            "/api/v1/events",
            Some(READER_A),
            None,
            &[("Last-Event-ID", "yesterday")],
        )
        .await;
    bad.problem(422);
    // Bytes that are not text, and two ids at once, are refused too, not dropped (which would
    // start the stream at the next event and lose the gap silently).
    for values in [&[&b"4\xff2"[..]][..], &[b"1", b"2"]] {
        let mut request = ctx
            .client
            .get(ctx.url("/api/v1/events"))
            .bearer_auth(READER_A);
        for value in values {
            request = request.header(
                "Last-Event-ID",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        // The status first: a stream opened by mistake would never end.
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 422, "{values:?}");
        let answer = crate::context::answer(response).await;
        assert_eq!(
            answer.problem(422)["errors"][0]["field"],
            "Last-Event-ID",
            "{values:?}"
        );
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn maintenance_windows_are_managed_audited_and_tenant_scoped() {
    let ctx = TestContext::start().await;
    let id = ctx.create(WRITER_A, "maintained", "inmemory").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/integrations/{id}/maintenance-windows");
    let now = chrono::Utc::now();
    let body = json!({
        "startsAt": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "recurrence": "weekly",
        "reason": "registry upgrade",
    });
    let created = ctx.post(&path, WRITER_A, &body).await;
    let window = created.ok(201).clone();
    let window_id = window["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("{path}/{window_id}").as_str())
    );
    assert_eq!(window["active"], true);
    assert_eq!(window["recurrence"], "weekly");
    assert_eq!(window["createdBy"], "apikey:writer-a");

    let listed = ctx.get(&path, READER_A).await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 1);

    // Bad input is a problem naming the field.
    for (bad, field) in [
        (
            json!({"startsAt": now.to_rfc3339(), "endsAt": (now - chrono::Duration::hours(1)).to_rfc3339()}),
            "endsAt",
        ),
        (
            json!({"startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::days(2)).to_rfc3339(), "recurrence": "daily"}),
            "endsAt",
        ),
        (
            json!({"startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(), "reason": "x".repeat(501)}),
            "reason",
        ),
    ] {
        let answer = ctx.post(&path, WRITER_A, &bad).await;
        assert_eq!(answer.problem(422)["errors"][0]["field"], field, "{bad}");
    }
    let unknown = ctx
        .post(
            &path,
            WRITER_A,
            &json!({"startsAt": now.to_rfc3339(), "endsAt": now.to_rfc3339(), "extra": 1}),
        )
        .await;
    assert!(unknown.status.is_client_error());
    ctx.post(&path, READER_A, &body).await.problem(403);

    // Tenant B sees nothing of it.
    ctx.get(&path, WRITER_B).await.problem(404);
    ctx.post(&path, WRITER_B, &body).await.problem(404);
    ctx.delete(&format!("{path}/{window_id}"), WRITER_B, &[])
        .await
        .problem(404);

    let deleted = ctx
        .delete(&format!("{path}/{window_id}"), WRITER_A, &[])
        .await;
    assert_eq!(deleted.status, 204);
    ctx.delete(&format!("{path}/{window_id}"), WRITER_A, &[])
        .await
        .problem(404);
    let audit = ctx
        .get(&format!("/api/v1/audit?integrationId={id}"), READER_A)
        .await;
    let actions: Vec<_> = audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "maintenance.delete",
            "maintenance.create",
            "integration.create"
        ]
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn an_active_maintenance_window_holds_events_but_not_checks() {
    let ctx = flipping().await;
    let id = create(
        &ctx,
        WRITER_A,
        "quiet",
        json!({"behaviour": "flapping", "pattern": "uh"}),
    )
    .await;
    let now = chrono::Utc::now();
    let window = json!({
        "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
    });
    ctx.post(
        &format!("/api/v1/integrations/{id}/maintenance-windows"),
        WRITER_A,
        &window,
    )
    .await
    .ok(201);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let history = ctx
        .get(&format!("/api/v1/integrations/{id}/health"), READER_A)
        .await;
    assert!(
        history.ok(200)["history"].as_array().unwrap().len() >= 2,
        "checks go on during maintenance"
    );
    // Only the event of the first check (unknown → unhealthy, before the window reached the
    // engine) may exist; the flips since are held.
    let mut stream = Sse::open(&ctx, READER_A, "?after=0", None).await;
    let mut held = Vec::new();
    while let Some(m) = stream.next(Duration::from_secs(2)).await {
        held.push(m);
    }
    assert!(held.len() <= 1, "events during maintenance: {held:?}");
    ctx.cleanup().await;
}

#[tokio::test]
async fn open_streams_end_when_the_daemon_stops() {
    let ctx = TestContext::start().await;
    let mut stream = Sse::open(&ctx, READER_A, "", None).await;
    // Without streams ending on their own, the graceful shutdown would wait out its whole
    // grace period (20 s) for this connection.
    tokio::time::timeout(Duration::from_secs(10), ctx.cleanup())
        .await
        .expect("shutdown does not wait for open event streams");
    assert!(stream.next(Duration::from_secs(2)).await.is_none());
}
