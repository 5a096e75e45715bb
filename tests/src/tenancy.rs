//! Tenant isolation: another tenant's integration does not exist, on every path.

use serde_json::json;

use crate::context::{READER_A, TestContext, WRITER_A, WRITER_B};

#[tokio::test]
async fn tenant_b_cannot_touch_tenant_a() {
    let ctx = TestContext::start().await;
    let created = ctx.create(WRITER_A, "secret-project", "inmemory").await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/integrations/{id}");

    // Read: 404, never 403, and nothing of A's in the body.
    let read = ctx.get(&path, WRITER_B).await;
    read.problem(404);
    assert!(!read.body.to_string().contains("secret-project"));
    // List and by-type: absent.
    for list in [
        "/api/v1/integrations",
        "/api/v1/integrations/by-type/inmemory",
    ] {
        let listed = ctx.get(list, WRITER_B).await;
        assert!(
            listed.ok(200)["items"].as_array().unwrap().is_empty(),
            "{list}"
        );
    }
    // Update and delete: 404, and A's integration is unchanged.
    ctx.put(&path, WRITER_B, &json!({"name": "pwned"}), &[])
        .await
        .problem(404);
    ctx.delete(&path, WRITER_B, &[]).await.problem(404);
    // Health operations: 404.
    ctx.post(&format!("{path}/health-check"), WRITER_B, &json!({}))
        .await
        .problem(404);
    ctx.get(&format!("{path}/health"), WRITER_B)
        .await
        .problem(404);
    // Audit: B's trail is empty, even when asking for A's integration by id.
    let trail = ctx
        .get(&format!("/api/v1/audit?integrationId={id}"), WRITER_B)
        .await;
    assert!(trail.ok(200)["items"].as_array().unwrap().is_empty());
    let all = ctx.get("/api/v1/audit", WRITER_B).await;
    assert!(all.ok(200)["items"].as_array().unwrap().is_empty());

    let still = ctx.get(&path, READER_A).await;
    assert_eq!(still.ok(200)["name"], "secret-project");
    assert_eq!(still.body["version"], 1);
    // The same name is free in tenant B.
    ctx.create(WRITER_B, "secret-project", "inmemory").await;
    ctx.cleanup().await;
}

/// On PostgreSQL, row-level security hides every tenant row from a connection that has not set
/// the tenant, even with no filter in the query: a missed filter cannot leak.
#[tokio::test]
async fn row_level_security_hides_rows_without_a_tenant() {
    if !actors::db::testing::use_postgres() {
        eprintln!(
            "row-level security exists on PostgreSQL only; run with STELLA_TEST_DATABASE=postgres"
        );
        return;
    }
    use sea_orm::{ConnectionTrait, Database, Statement};
    let ctx = TestContext::start().await;
    ctx.create(WRITER_A, "a1", "inmemory").await;
    ctx.create(WRITER_B, "b1", "inmemory").await;
    let db = Database::connect(ctx.database_url.as_str()).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) AS n FROM integrations").await, 0);
    assert_eq!(count("SELECT count(*) AS n FROM audit_logs").await, 0);
    let txn = sea_orm::TransactionTrait::begin(&db).await.unwrap();
    txn.execute_unprepared("SELECT set_config('stella.tenant_id', 'tenant-a', true)")
        .await
        .unwrap();
    let row = txn
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM integrations",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
    // Writing a row for another tenant is refused by the policy's WITH CHECK.
    let insert = txn
        .execute_unprepared(
            "INSERT INTO audit_logs (tenant_id, actor, action, timestamp, details) \
             VALUES ('tenant-b', 'x', 'x', now(), '{}')",
        )
        .await;
    assert!(
        insert.is_err(),
        "row-level security let a cross-tenant insert through"
    );
    drop(txn);
    ctx.cleanup().await;
}
