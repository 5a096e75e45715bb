//! `If-Match` on changes to integrations and webhook subscriptions (RFC 9110 §13.1.1): a list
//! of entity tags matches when any tag matches the current version by strong comparison; a
//! malformed header is a 400 and one that matches nothing a 412; neither is ever ignored.

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::context::{Answer, READER_A, TestContext, WRITER_A, answer};

/// Sends `method` to `path` with these `If-Match` field lines, as raw bytes.
async fn send(
    ctx: &TestContext,
    method: Method,
    path: &str,
    body: Option<&Value>,
    if_match: &[&[u8]],
) -> Answer {
    let mut request = ctx
        .client
        .request(method, ctx.url(path))
        .bearer_auth(WRITER_A);
    if let Some(body) = body {
        request = request.json(body);
    }
    for line in if_match {
        request = request.header("If-Match", HeaderValue::from_bytes(line).unwrap());
    }
    answer(request.send().await.expect("request sent")).await
}

async fn version(ctx: &TestContext, path: &str) -> Value {
    ctx.get(path, READER_A).await.ok(200)["version"].clone()
}

/// Runs the same `If-Match` cases against the resource at `path` (at version 1), changed
/// with `change`.
async fn if_match_is_never_ignored(ctx: &TestContext, path: &str, change: &Value) {
    assert_eq!(version(ctx, path).await, 1);
    let malformed: [&[u8]; 10] = [
        b"1",
        b"\"1",
        b"W/1",
        b"\"1\" \"2\"",
        b"*, \"1\"",
        b"\"1\"; q=1",
        b"garbage",
        // Not ASCII, outside a tag: poem-openapi's Header would drop it and read no header.
        "\u{e9}".as_bytes(),
        b"\xff",
        b"\"1\"\xe9",
    ];
    for value in malformed {
        for method in [Method::PUT, Method::DELETE] {
            let body = (method == Method::PUT).then_some(change);
            let case = format!("{method} If-Match: {}", value.escape_ascii());
            let refused = send(ctx, method, path, body, &[value]).await;
            let problem = refused.problem(400);
            assert_eq!(problem["errors"][0]["field"], "If-Match", "{case}");
            assert_eq!(version(ctx, path).await, 1, "{case} was applied");
        }
    }
    // Two field lines that are each fine make a malformed list.
    let lines: [&[u8]; 2] = [b"*", b"\"1\""];
    send(ctx, Method::PUT, path, Some(change), &lines)
        .await
        .problem(400);

    // Well-formed, but no tag is the current version (1) by strong comparison.
    let unmatched: [&[u8]; 7] = [
        b"W/\"1\"",
        b"\"01\"",
        b"\"+1\"",
        b"\"2\", \"3\"",
        "\"\u{e9}\"".as_bytes(),
        b"",
        b" , ",
    ];
    for value in unmatched {
        for method in [Method::PUT, Method::DELETE] {
            let body = (method == Method::PUT).then_some(change);
            let case = format!("{method} If-Match: {}", value.escape_ascii());
            let refused = send(ctx, method, path, body, &[value]).await;
            assert_eq!(
                refused.problem(412)["code"],
                "precondition_failed",
                "{case}"
            );
            assert_eq!(version(ctx, path).await, 1, "{case} was applied");
        }
    }

    // A list matches when any of its tags does, across field lines too.
    let changed = send(
        ctx,
        Method::PUT,
        path,
        Some(change),
        &[b"\"5\", W/\"2\", \"1\""],
    )
    .await;
    assert_eq!(changed.ok(200)["version"], 2);
    assert_eq!(changed.header("etag"), Some("\"2\""));
    let lines: [&[u8]; 2] = [b"\"1\", \"3\"", b"\"4\""];
    send(ctx, Method::PUT, path, Some(change), &lines)
        .await
        .problem(412);
    let lines: [&[u8]; 2] = [b"\"7\"", b"\"2\""];
    let changed = send(ctx, Method::PUT, path, Some(change), &lines).await;
    assert_eq!(changed.ok(200)["version"], 3);
    let lines: [&[u8]; 2] = [b"\"1\"", b"\"2\""];
    send(ctx, Method::DELETE, path, None, &lines)
        .await
        .problem(412);
    assert_eq!(version(ctx, path).await, 3);
    let deleted = send(ctx, Method::DELETE, path, None, &[b"\"9\",\"3\""]).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    ctx.get(path, READER_A).await.problem(404);
}

#[tokio::test]
async fn integrations_honour_if_match() {
    let ctx = TestContext::start().await;
    let created = ctx.create(WRITER_A, "guarded", "inmemory").await;
    let path = format!("/api/v1/integrations/{}", created["id"].as_str().unwrap());
    let change = json!({"name": "guarded-2", "config": {}});
    if_match_is_never_ignored(&ctx, &path, &change).await;

    // Monitoring changes honour it too.
    let other = ctx.create(WRITER_A, "monitored", "inmemory").await;
    let path = format!("/api/v1/integrations/{}", other["id"].as_str().unwrap());
    let monitoring = format!("{path}/monitoring");
    let pause = json!({"paused": true});
    send(
        &ctx,
        Method::PUT,
        &monitoring,
        Some(&pause),
        &["\u{e9}".as_bytes()],
    )
    .await
    .problem(400);
    send(
        &ctx,
        Method::PUT,
        &monitoring,
        Some(&pause),
        &[b"\"2\", \"3\""],
    )
    .await
    .problem(412);
    assert_eq!(version(&ctx, &path).await, 1);
    let paused = send(
        &ctx,
        Method::PUT,
        &monitoring,
        Some(&pause),
        &[b"\"3\", \"1\""],
    )
    .await;
    assert_eq!(paused.ok(200)["version"], 2);
    ctx.cleanup().await;
}

#[tokio::test]
async fn webhook_subscriptions_honour_if_match() {
    let ctx = TestContext::start().await;
    let subscription = json!({"name": "pager", "targetUrl": "https://93.184.215.14/hook",
        "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"});
    let created = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &subscription)
        .await;
    let path = format!(
        "/api/v1/webhook-subscriptions/{}",
        created.ok(201)["id"].as_str().unwrap()
    );
    let change = json!({"name": "pager-2", "targetUrl": "https://93.184.215.14/hook",
        "enabled": false, "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"});
    if_match_is_never_ignored(&ctx, &path, &change).await;
    ctx.cleanup().await;
}
