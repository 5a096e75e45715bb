//! First start: with no keys configured, an administrator key is generated once.

use crate::context::TestContext;

#[tokio::test]
async fn first_start_generates_one_admin_key_and_stores_only_its_hash() {
    daemon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let url = actors::db::testing::fresh_url(dir.path()).await;
    let config = |url: &str| {
        let mut c = daemon::config::Config::default();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.database.url = url.to_owned();
        c.auth.rate_limit.per_second = 0;
        c
    };
    let first = daemon::start(config(&url)).await.unwrap();
    let key = first
        .generated_admin_key
        .clone()
        .expect("a key is generated at first start");
    let ctx = TestContext {
        addr: first.local_addr(),
        daemon: Some(first),
        client: reqwest::Client::new(),
        database_url: url.clone(),
        _dir: None,
    };
    let created = ctx.create(&key, "bootstrap", "inmemory").await;
    assert_eq!(created["tenantId"], "default");
    ctx.post(
        "/api/v1/integrations/plugins/discover",
        &key,
        &serde_json::json!({}),
    )
    .await
    .ok(200);
    ctx.cleanup().await;

    // The second start generates nothing new, and the first key still works.
    let second = daemon::start(config(&url)).await.unwrap();
    assert!(second.generated_admin_key.is_none());
    let ctx = TestContext {
        addr: second.local_addr(),
        daemon: Some(second),
        client: reqwest::Client::new(),
        database_url: url.clone(),
        _dir: None,
    };
    ctx.get("/api/v1/integrations", &key).await.ok(200);
    // It is listed, and could be deleted, through the API like any key made there.
    let listed = ctx.get("/api/v1/api-keys", &key).await;
    assert_eq!(listed.ok(200)["items"][0]["id"], "bootstrap-admin");
    assert_eq!(listed.body["items"][0]["source"], "api");
    ctx.cleanup().await;

    // Only the digest is in the database (read as a system task: on PostgreSQL the table is
    // behind row-level security).
    let db = sea_orm::Database::connect(url.as_str()).await.unwrap();
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    let txn = db.begin().await.unwrap();
    if db.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
            .await
            .unwrap();
    }
    let rows = txn
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM api_keys",
        ))
        .await
        .unwrap();
    drop(txn);
    assert_eq!(rows.len(), 1);
    let stored: String = rows[0].try_get("", "key_sha256").unwrap();
    assert_ne!(stored, key);
    assert_eq!(stored.len(), 64);
    drop(dir);
}
