//! The health engine through the API: on-demand checks, status transitions, history, uptime,
//! pausing, metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::context::{READER_A, TestContext, WRITER_A, WRITER_B};

/// A daemon whose monitors check every second and back off from one second.
async fn fast() -> TestContext {
    TestContext::start_with(|c| {
        c.health.interval_seconds = 1;
        c.health.backoff_min_seconds = 1;
        c.health.backoff_max_seconds = 2;
        c.health.timeout_seconds = 2;
        c.health.writer_flush_ms = 20;
    })
    .await
}

async fn create(ctx: &TestContext, name: &str, config: Value) -> String {
    let body = json!({"type": "inmemory", "name": name, "config": config});
    let created = ctx.post("/api/v1/integrations", WRITER_A, &body).await;
    created.ok(201)["id"].as_str().unwrap().to_owned()
}

/// Polls `path` until `done` holds, for at most 15 s.
async fn eventually(ctx: &TestContext, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        let answer = ctx.get(path, READER_A).await;
        last = answer.ok(200).clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached on {path}: {last}");
}

#[tokio::test]
async fn on_demand_check_history_and_uptime() {
    let ctx = fast().await;
    let id = create(&ctx, "memory-ok", json!({"latencyMs": 20})).await;
    let check = ctx
        .post(
            &format!("/api/v1/integrations/{id}/health-check"),
            WRITER_A,
            &json!({}),
        )
        .await;
    let result = check.ok(200);
    assert_eq!(result["status"], "healthy");
    assert!(result["latencyMs"].as_i64().unwrap() >= 20);
    // The answer comes once the result is written: a read right after it sees the status.
    let row = ctx
        .get(&format!("/api/v1/integrations/{id}"), READER_A)
        .await;
    assert_eq!(row.ok(200)["status"], "healthy");

    let health = eventually(&ctx, &format!("/api/v1/integrations/{id}/health"), |h| {
        h["history"].as_array().unwrap().len() >= 3
    })
    .await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["uptime"]["last24h"], 1.0);
    assert_eq!(health["intervalSeconds"], 1);
    assert!(health["lastCheck"]["checkedAt"].is_string());
    assert!(health["history"][0]["latencyMs"].as_i64().unwrap() >= 20);

    // History pages with a cursor and filters with `since`.
    let page = ctx
        .get(
            &format!("/api/v1/integrations/{id}/health?limit=1"),
            READER_A,
        )
        .await;
    let cursor = page.ok(200)["nextCursor"].as_str().unwrap().to_owned();
    let older = ctx
        .get(
            &format!("/api/v1/integrations/{id}/health?limit=1&cursor={cursor}"),
            READER_A,
        )
        .await;
    assert_ne!(
        older.ok(200)["history"][0]["checkedAt"],
        page.body["history"][0]["checkedAt"]
    );
    let future = ctx
        .get(
            &format!("/api/v1/integrations/{id}/health?since=2999-01-01T00:00:00Z"),
            READER_A,
        )
        .await;
    assert!(future.ok(200)["history"].as_array().unwrap().is_empty());
    ctx.get(
        &format!("/api/v1/integrations/{id}/health?since=yesterday"),
        READER_A,
    )
    .await
    .problem(400);

    // Another tenant sees none of it.
    ctx.get(&format!("/api/v1/integrations/{id}/health"), WRITER_B)
        .await
        .problem(404);
    ctx.post(
        &format!("/api/v1/integrations/{id}/health-check"),
        WRITER_B,
        &json!({}),
    )
    .await
    .problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn failures_turn_unhealthy_and_the_catalog_shows_it() {
    let ctx = fast().await;
    let id = create(&ctx, "memory-down", json!({"behaviour": "unhealthy"})).await;
    let path = format!("/api/v1/integrations/{id}");
    let row = eventually(&ctx, &path, |i| i["status"] == "unhealthy").await;
    assert_eq!(row["statusReason"], "provider_degraded");
    assert!(row["lastCheckedAt"].is_string());
    let health = ctx.get(&format!("{path}/health"), READER_A).await;
    assert!(health.ok(200)["consecutiveFailures"].as_u64().unwrap() >= 3);
    assert_eq!(health.body["uptime"]["last24h"], 0.0);
    // The list shows it too, for clients like the IDE extensions.
    let listed = ctx.get("/api/v1/integrations", READER_A).await;
    assert_eq!(listed.ok(200)["items"][0]["status"], "unhealthy");

    // Fixing the configuration reschedules at once and recovers.
    let fixed = ctx
        .put(
            &path,
            WRITER_A,
            &json!({"name": "memory-down", "config": {}}),
            &[],
        )
        .await;
    fixed.ok(200);
    eventually(&ctx, &path, |i| i["status"] == "healthy").await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn monitoring_pauses_resumes_and_takes_an_interval() {
    let ctx = fast().await;
    let id = create(&ctx, "memory-pause", json!({})).await;
    let path = format!("/api/v1/integrations/{id}");
    eventually(&ctx, &path, |i| i["status"] == "healthy").await;

    let paused = ctx
        .put(
            &format!("{path}/monitoring"),
            WRITER_A,
            &json!({"paused": true, "intervalSeconds": 60}),
            &[],
        )
        .await;
    assert_eq!(paused.ok(200)["monitoringPaused"], true);
    assert_eq!(paused.body["checkIntervalSeconds"], 60);
    eventually(&ctx, &path, |i| i["status"] == "paused").await;
    let h1 = ctx
        .get(&format!("{path}/health"), READER_A)
        .await
        .ok(200)
        .clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h2 = ctx
        .get(&format!("{path}/health"), READER_A)
        .await
        .ok(200)
        .clone();
    assert_eq!(
        h1["history"].as_array().unwrap().len(),
        h2["history"].as_array().unwrap().len(),
        "no checks while paused"
    );
    assert_eq!(h2["intervalSeconds"], 60);
    assert_eq!(h2["nextCheckAt"], Value::Null);

    ctx.put(
        &format!("{path}/monitoring"),
        WRITER_A,
        &json!({"paused": false, "intervalSeconds": null}),
        &[],
    )
    .await
    .ok(200);
    eventually(&ctx, &path, |i| i["status"] == "healthy").await;

    // Bad intervals, stale versions, read-only tokens and other tenants are refused.
    ctx.put(
        &format!("{path}/monitoring"),
        WRITER_A,
        &json!({"paused": false, "intervalSeconds": 1}),
        &[],
    )
    .await
    .problem(422);
    ctx.put(
        &format!("{path}/monitoring"),
        WRITER_A,
        &json!({"paused": false}),
        &[("If-Match", "\"1\"")],
    )
    .await
    .problem(412);
    ctx.put(
        &format!("{path}/monitoring"),
        READER_A,
        &json!({"paused": true}),
        &[],
    )
    .await
    .problem(403);
    ctx.put(
        &format!("{path}/monitoring"),
        WRITER_B,
        &json!({"paused": true}),
        &[],
    )
    .await
    .problem(404);
    let trail = ctx
        .get(&format!("/api/v1/audit?integrationId={id}"), READER_A)
        .await;
    let actions: Vec<_> = trail.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "integration.monitoring")
            .count(),
        2
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_deleted_integration_stops_being_checked() {
    let ctx = fast().await;
    let id = create(&ctx, "memory-gone", json!({})).await;
    let path = format!("/api/v1/integrations/{id}");
    eventually(&ctx, &path, |i| i["status"] == "healthy").await;
    ctx.delete(&path, WRITER_A, &[]).await.ok(204);
    ctx.post(&format!("{path}/health-check"), WRITER_A, &json!({}))
        .await
        .problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_text() {
    let ctx = fast().await;
    create(&ctx, "memory-metrics", json!({})).await;
    let path = "/api/v1/integrations";
    eventually(&ctx, path, |l| l["items"][0]["status"] == "healthy").await;
    let text = ctx
        .client
        .get(ctx.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "integration_health_status",
        "integration_health_latency_ms_bucket",
        "integration_health_latency_seconds_bucket",
        "integration_crud_total",
        "integration_monitors_running",
        "integration_checks_in_flight",
        "integration_schedule_lag_seconds_bucket",
        "integration_health_writer_batch_size_bucket",
        "integration_health_writer_queued",
        "integration_health_writer_write_seconds_bucket",
        "integration_health_checks_total{",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(
        text.contains("tenant=\"tenant-a\""),
        "status is labelled by tenant"
    );
    // The allocator's statistics are compiled in and read: a daemon holds megabytes.
    for state in ["allocated", "resident"] {
        let bytes: f64 = text
            .lines()
            .find(|l| {
                l.starts_with("process_heap_bytes{") && l.contains(&format!("state=\"{state}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("process_heap_bytes{{state={state}}} missing from /metrics"));
        assert!(bytes > 1e6, "{state} heap is {bytes} bytes");
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn summaries_are_listed_hour_by_hour_and_day_by_day() {
    use actors::store::health::{CheckRow, start_of_day, start_of_hour};
    use chrono::{Duration as ChronoDuration, Utc};

    let ctx = TestContext::start().await;
    let id = create(&ctx, "memory-summaries", json!({})).await;
    let path = format!("/api/v1/integrations/{id}/health/summaries");
    let empty = ctx.get(&path, READER_A).await;
    assert_eq!(empty.ok(200)["granularity"], "hour");
    assert!(empty.body["items"].as_array().unwrap().is_empty());

    // Three hours of results two days ago, summarised and rolled up as the daemon would.
    let db = actors::db::connect(&ctx.database_url, &Default::default())
        .await
        .unwrap();
    let system = actors::store::Store::new(db).system();
    let day = start_of_day(Utc::now()) - ChronoDuration::days(2);
    let uuid: uuid::Uuid = id.parse().unwrap();
    let rows: Vec<_> = (0..30)
        .map(|i| CheckRow {
            integration_id: uuid,
            tenant_id: "tenant-a".into(),
            checked_at: day + ChronoDuration::minutes(i * 6),
            status: if i % 5 == 0 { "unhealthy" } else { "healthy" },
            reason: None,
            latency_ms: i,
            error_message: None,
            folded: None,
        })
        .collect();
    system.write_results(&rows, &[], &[]).await.unwrap();
    for h in 0..3 {
        system
            .summarize_hour(start_of_hour(day + ChronoDuration::hours(h)))
            .await
            .unwrap();
    }
    system.roll_up_day(day).await.unwrap();

    let first = ctx.get(&format!("{path}?limit=2"), READER_A).await;
    let items = first.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0],
        json!({"start": day.to_rfc3339(),
               "checks": 10, "failures": 2, "uptime": 0.8,
               "latencyP50Ms": 4, "latencyP95Ms": 9, "latencyP99Ms": 9, "latencyMaxMs": 9})
    );
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let rest = ctx
        .get(&format!("{path}?limit=2&cursor={cursor}"), READER_A)
        .await;
    assert_eq!(rest.ok(200)["items"].as_array().unwrap().len(), 1);
    assert!(rest.body["nextCursor"].is_null());
    let since = (day + ChronoDuration::hours(1)).to_rfc3339();
    let later = ctx
        .get(
            &format!("{path}?since={}", since.replace('+', "%2B")),
            READER_A,
        )
        .await;
    assert_eq!(later.ok(200)["items"].as_array().unwrap().len(), 2);

    let daily = ctx.get(&format!("{path}?granularity=day"), READER_A).await;
    assert_eq!(daily.ok(200)["granularity"], "day");
    assert_eq!(daily.body["items"][0]["checks"], 30);
    assert_eq!(daily.body["items"][0]["failures"], 6);
    assert_eq!(daily.body["items"][0]["latencyMaxMs"], 29);

    ctx.get(&format!("{path}?granularity=minute"), READER_A)
        .await
        .problem(400);
    ctx.get(&format!("{path}?cursor=forged"), READER_A)
        .await
        .problem(400);
    ctx.get(&path, WRITER_B).await.problem(404);
    ctx.cleanup().await;
}

/// `raw_history = "changes"`: a steady integration keeps few rows while every check still
/// counts in uptime; a change of status is stored when it happens.
#[tokio::test]
async fn changes_mode_keeps_state_changes_and_counts_every_check() {
    let ctx = TestContext::start_with(|c| {
        c.health.interval_seconds = 1;
        c.health.jitter = 0.0;
        c.health.backoff_min_seconds = 1;
        c.health.backoff_max_seconds = 1;
        c.health.timeout_seconds = 2;
        c.health.writer_flush_ms = 20;
        c.health.raw_history = actors::health::history::changes::RawHistory::Changes;
    })
    .await;
    let id = create(&ctx, "memory-changes", json!({})).await;
    let path = format!("/api/v1/integrations/{id}/health");
    // Six checks or more in a second apart; the first is stored, the rest are held in one
    // sample until their hour is over.
    let steady = eventually(&ctx, &path, |h| {
        h["consecutiveSuccesses"].as_u64().unwrap_or(0) >= 6
    })
    .await;
    assert!(steady["history"].as_array().unwrap().len() <= 2, "{steady}");
    assert_eq!(steady["uptime"]["last24h"], 1.0);

    // A change of behaviour is stored at once.
    ctx.put(
        &format!("/api/v1/integrations/{id}"),
        WRITER_A,
        &json!({"name": "memory-changes", "config": {"behaviour": "unhealthy"}}),
        &[],
    )
    .await
    .ok(200);
    let failing = eventually(&ctx, &path, |h| {
        h["history"][0]["status"] == "unhealthy"
            && h["consecutiveFailures"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    let history = failing["history"].as_array().unwrap();
    assert!(history.len() <= 4, "{failing}");

    // Every check counts, stored or held back: more successes than rows, and the failures.
    // (Exact counts are checked against the connector's own in
    // `actors::health::history::changes`; the daemon's metrics here are shared with the
    // other tests' daemons.)
    let uptime = failing["uptime"]["last24h"].as_f64().unwrap();
    let ok = steady["consecutiveSuccesses"].as_f64().unwrap();
    let failed = failing["consecutiveFailures"].as_f64().unwrap();
    assert!(uptime < 1.0, "{failing}");
    assert!(uptime >= ok / (ok + failed + 10.0), "{uptime}: {failing}");
    ctx.cleanup().await;
}

/// What will break an integration soon is on the check's answer and on `lastCheck` as
/// structured fields.
#[tokio::test]
async fn expiry_and_quota_are_structured_fields_of_the_last_check() {
    let ctx = fast().await;
    let id = create(
        &ctx,
        "memory-expiring",
        json!({"credentialExpiresAt": "2030-01-02T03:04:05Z",
               "quotaRemaining": 12, "quotaLimit": 5000}),
    )
    .await;
    let check = ctx
        .post(
            &format!("/api/v1/integrations/{id}/health-check"),
            WRITER_A,
            &json!({}),
        )
        .await;
    let result = check.ok(200);
    assert_eq!(result["expiresAt"], "2030-01-02T03:04:05+00:00");
    assert_eq!(result["quotaRemaining"], 12);
    assert_eq!(result["quotaLimit"], 5000);
    assert!(result["quotaResetAt"].is_null());
    assert!(result["certificateExpiresAt"].is_null());
    let health = eventually(&ctx, &format!("/api/v1/integrations/{id}/health"), |h| {
        !h["lastCheck"].is_null()
    })
    .await;
    assert_eq!(
        health["lastCheck"]["expiresAt"],
        "2030-01-02T03:04:05+00:00"
    );
    assert_eq!(health["lastCheck"]["quotaRemaining"], 12);
    // an integration that tells nothing has the fields, null
    let plain = create(&ctx, "memory-plain", json!({})).await;
    let check = ctx
        .post(
            &format!("/api/v1/integrations/{plain}/health-check"),
            WRITER_A,
            &json!({}),
        )
        .await;
    let result = check.ok(200);
    assert!(result["expiresAt"].is_null() && result["quotaRemaining"].is_null());
}
