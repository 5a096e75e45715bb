//! API keys managed through `/api/v1/api-keys`: shown once, stored as a digest, scoped, with
//! an expiry and a last-used time, audited, and refused everywhere once deleted; written from
//! the attacker's side as much as the user's.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::context::{ADMIN_A, READER_A, TENANT_B, TestContext, WRITER_A, api_key, standard_keys};

/// Tenant B's administrator, added to the standard keys where a test needs one.
const ADMIN_B: &str = "test-key-admin-b";

async fn with_admin_b() -> TestContext {
    TestContext::start_with(|c| {
        let mut keys = standard_keys();
        keys.push(api_key(
            "admin-b",
            ADMIN_B,
            TENANT_B,
            &["integrations:admin"],
        ));
        c.auth.api_keys = keys;
    })
    .await
}

/// Creates a key with `body` as tenant A's administrator; returns (id, key).
async fn create(ctx: &TestContext, body: &Value) -> (String, String) {
    let created = ctx.post("/api/v1/api-keys", ADMIN_A, body).await;
    let body = created.ok(201);
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// Polls `done` every 20 ms for at most `limit`; returns how long it took.
async fn within(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not done within {limit:?}");
}

#[tokio::test]
async fn a_key_is_shown_once_listed_without_its_secret_and_audited() {
    let ctx = TestContext::start().await;
    let created = ctx
        .post(
            "/api/v1/api-keys",
            ADMIN_A,
            &json!({"name": "ci-scanner", "scopes": ["integrations:read"]}),
        )
        .await;
    let body = created.ok(201).clone();
    let key = body["key"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("stk_") && key.len() > 40, "{body}");
    assert_eq!(body["source"], "api");
    assert_eq!(body["scopes"], json!(["integrations:read"]));
    assert_eq!(body["createdBy"], "apikey:admin-a");
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/api-keys/{id}"));

    // The Location is readable, and nothing but the creation answer holds the key.
    let one = ctx.get(&location, ADMIN_A).await;
    assert_eq!(one.ok(200)["id"], id.as_str());
    assert!(one.body.get("key").is_none());
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let list = ctx.get("/api/v1/api-keys", ADMIN_A).await;
    let text = list.ok(200).to_string();
    assert!(!text.contains(&key) && !text.contains(&digest), "{text}");
    let items = list.body["items"].as_array().unwrap();
    let sources: Vec<(&str, &str)> = items
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["source"].as_str().unwrap()))
        .collect();
    // Tenant A's configured keys (read-only) first, then the stored one; never tenant B's.
    assert_eq!(
        sources,
        [
            ("admin-a", "config"),
            ("writer-a", "config"),
            ("reader-a", "config"),
            (id.as_str(), "api")
        ]
    );

    // The key works with its scopes and no more.
    ctx.get("/api/v1/integrations", &key).await.ok(200);
    ctx.post(
        "/api/v1/integrations",
        &key,
        &json!({"type": "inmemory", "name": "x"}),
    )
    .await
    .problem(403);
    // Its last use is recorded off the request path, within a few seconds.
    within(Duration::from_secs(10), async || {
        !ctx.get(&location, ADMIN_A).await.body["lastUsedAt"].is_null()
    })
    .await;

    ctx.delete(&location, ADMIN_A, &[]).await.ok(204);
    ctx.get(&location, ADMIN_A).await.problem(404);
    ctx.delete(&location, ADMIN_A, &[]).await.problem(404);

    // Both changes are in the audit trail, by the administrator, without the key or digest.
    let trail = ctx.get("/api/v1/audit", ADMIN_A).await;
    let text = trail.ok(200).to_string();
    assert!(!text.contains(&key) && !text.contains(&digest), "{text}");
    let actions: Vec<(&str, &str)> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions[..2],
        [
            ("api_key.delete", "apikey:admin-a"),
            ("api_key.create", "apikey:admin-a")
        ]
    );
    ctx.cleanup().await;
}

/// Every operation of the document, its path parameters filled with well-formed ids.
async fn every_api_operation(ctx: &TestContext) -> Vec<(Method, String)> {
    let spec = ctx
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await
        .body;
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        let mut concrete = String::new();
        for segment in path.split('/').skip(1) {
            concrete.push('/');
            if segment.starts_with('{') {
                concrete.push_str("0193a6c1-0000-7000-8000-000000000000");
            } else {
                concrete.push_str(segment);
            }
        }
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase().parse().unwrap(), concrete.clone()));
        }
    }
    assert!(operations.len() > 30, "{operations:?}");
    operations
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_every_endpoint_at_once() {
    let ctx = TestContext::start().await;
    let (id, key) = create(&ctx, &json!({"scopes": ["integrations:admin"]})).await;
    ctx.get("/api/v1/integrations", &key).await.ok(200);
    // The key may revoke itself.
    ctx.delete(&format!("/api/v1/api-keys/{id}"), &key, &[])
        .await
        .ok(204);
    for (method, path) in every_api_operation(&ctx).await {
        let body = json!({});
        let answer = ctx
            .call(method.clone(), &path, Some(&key), Some(&body), &[])
            .await;
        assert_eq!(answer.status, 401, "{method} {path}: {answer:?}");
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn another_tenants_keys_are_invisible_and_undeletable() {
    let ctx = with_admin_b().await;
    let (id, key) = create(&ctx, &json!({"scopes": ["integrations:read"]})).await;
    let path = format!("/api/v1/api-keys/{id}");
    ctx.get(&path, ADMIN_B).await.problem(404);
    ctx.delete(&path, ADMIN_B, &[]).await.problem(404);
    // Nor can B reach A's configured keys.
    ctx.get("/api/v1/api-keys/admin-a", ADMIN_B)
        .await
        .problem(404);
    ctx.delete("/api/v1/api-keys/admin-a", ADMIN_B, &[])
        .await
        .problem(404);
    let listed = ctx.get("/api/v1/api-keys", ADMIN_B).await;
    let ids: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["writer-b", "admin-b"]);
    // A's key still works, in A's tenant only.
    let seen = ctx.get("/api/v1/integrations", &key).await;
    assert_eq!(seen.ok(200)["items"], json!([]));
    ctx.create(ADMIN_B, "b-only", "inmemory").await;
    assert_eq!(
        ctx.get("/api/v1/integrations", &key).await.body["items"],
        json!([])
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn only_administrators_manage_keys_and_no_key_gets_more_than_its_maker() {
    let ctx = TestContext::start().await;
    for key in [WRITER_A, READER_A] {
        ctx.post(
            "/api/v1/api-keys",
            key,
            &json!({"scopes": ["integrations:read"]}),
        )
        .await
        .problem(403);
        ctx.get("/api/v1/api-keys", key).await.problem(403);
        ctx.get("/api/v1/api-keys/admin-a", key).await.problem(403);
        ctx.delete("/api/v1/api-keys/admin-a", key, &[])
            .await
            .problem(403);
    }
    // A writer key made by the administrator cannot mint an administrator key.
    let (_, writer) = create(&ctx, &json!({"scopes": ["integrations:write"]})).await;
    let refused = ctx
        .post(
            "/api/v1/api-keys",
            &writer,
            &json!({"scopes": ["integrations:admin"]}),
        )
        .await;
    refused.problem(403);
    // Scopes the hub does not define, no scopes, bad expiry or name: refused.
    for (body, status) in [
        (json!({"scopes": ["root"]}), 400),
        (json!({"scopes": ["integrations:*"]}), 400),
        (json!({"scopes": []}), 422),
        (
            json!({"scopes": ["integrations:read"], "tenant": "tenant-b"}),
            400,
        ),
        (
            json!({"scopes": ["integrations:read"], "expiresAt": "2001-01-01T00:00:00Z"}),
            422,
        ),
        (
            json!({"scopes": ["integrations:read"], "expiresAt": "2999-01-01T00:00:00Z"}),
            422,
        ),
        (
            json!({"scopes": ["integrations:read"], "name": "x".repeat(101)}),
            422,
        ),
        (
            json!({"scopes": ["integrations:read"], "name": "a\u{7}b"}),
            422,
        ),
    ] {
        ctx.post("/api/v1/api-keys", ADMIN_A, &body)
            .await
            .problem(status);
    }
    // Configured keys are listed and readable, but not deletable here.
    let configured = ctx.get("/api/v1/api-keys/admin-a", ADMIN_A).await;
    assert_eq!(configured.ok(200)["source"], "config");
    ctx.delete("/api/v1/api-keys/admin-a", ADMIN_A, &[])
        .await
        .problem(409);
    ctx.get("/api/v1/integrations", ADMIN_A).await.ok(200);
    ctx.cleanup().await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let ctx = TestContext::start().await;
    let expires = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let (id, key) = create(
        &ctx,
        &json!({"scopes": ["integrations:read"], "expiresAt": expires}),
    )
    .await;
    let listed = ctx.get(&format!("/api/v1/api-keys/{id}"), ADMIN_A).await;
    assert!(listed.ok(200)["expiresAt"].is_string());
    ctx.get("/api/v1/integrations", &key).await.ok(200);
    within(Duration::from_secs(10), async || {
        ctx.get("/api/v1/integrations", &key).await.status == 401
    })
    .await;
    let refused = ctx.get("/api/v1/integrations", &key).await;
    assert!(
        refused.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert!(chrono::Utc::now() >= expires);
    ctx.cleanup().await;
}

/// On PostgreSQL the keys table is a tenant table: without the tenant set, no row is visible.
#[tokio::test]
async fn row_level_security_hides_other_tenants_keys() {
    if !actors::db::testing::use_postgres() {
        eprintln!(
            "row-level security exists on PostgreSQL only; run with STELLA_TEST_DATABASE=postgres"
        );
        return;
    }
    use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};
    let ctx = TestContext::start().await;
    create(&ctx, &json!({"scopes": ["integrations:read"]})).await;
    let db = Database::connect(ctx.database_url.as_str()).await.unwrap();
    let count = async |tenant: Option<&str>| {
        let txn = db.begin().await.unwrap();
        if let Some(tenant) = tenant {
            txn.execute_unprepared(&format!(
                "SELECT set_config('stella.tenant_id', '{tenant}', true)"
            ))
            .await
            .unwrap();
        }
        let row = txn
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM api_keys",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    assert_eq!(count(None).await, 0);
    assert_eq!(count(Some("tenant-b")).await, 0);
    assert_eq!(count(Some("tenant-a")).await, 1);
    ctx.cleanup().await;
}

/// What `/api/v1/events?{query}` streams to `key` within `wait` (the stream stays open).
async fn stream_for(ctx: &TestContext, key: &str, query: &str, wait: Duration) -> String {
    let mut response = ctx
        .client
        .get(ctx.url(&format!("/api/v1/events?{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// A key about to expire is announced once, to its tenant only, like any expiring credential.
#[tokio::test]
async fn a_key_about_to_expire_is_announced_once_to_its_tenant() {
    const TYPE: &str = "dev.stellaops.integration.apikey.expiring";
    let ctx = with_admin_b().await;
    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let (id, key) = create(
        &ctx,
        &json!({"name": "short-lived", "scopes": ["integrations:read"], "expiresAt": expires}),
    )
    .await;
    // A key without expiry, or far from it, is not announced.
    create(&ctx, &json!({"scopes": ["integrations:read"]})).await;
    let query = format!("after=0&type={TYPE}");
    let start = Instant::now();
    let mut seen = String::new();
    while !seen.contains(&id) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no warning: {seen}"
        );
        seen = stream_for(&ctx, ADMIN_A, &query, Duration::from_secs(2)).await;
    }
    let data: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(data.len(), 1, "{seen}");
    let event = &data[0];
    assert_eq!(event["type"], TYPE);
    assert_eq!(event["tenant"], "tenant-a");
    assert_eq!(event["data"]["keyId"], id.as_str());
    assert_eq!(event["data"]["name"], "short-lived");
    assert!(event["data"]["expiresInSeconds"].as_i64().unwrap() <= 3600);
    assert!(!seen.contains(&key));
    // Later scans do not repeat it, and tenant B never sees it.
    tokio::time::sleep(daemon::auth::stored::EXPIRY_SCAN + Duration::from_secs(1)).await;
    let again = stream_for(&ctx, ADMIN_A, &query, Duration::from_secs(1)).await;
    assert_eq!(again.matches(&id).count(), 1, "{again}");
    let theirs = stream_for(&ctx, ADMIN_B, &query, Duration::from_secs(1)).await;
    assert!(!theirs.contains(TYPE), "{theirs}");
    ctx.cleanup().await;
}
