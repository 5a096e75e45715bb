//! The catalog: CRUD, filters, pagination, soft delete, versions, audit.

use serde_json::json;

use crate::context::{ADMIN_A, READER_A, TestContext, WRITER_A};

#[tokio::test]
async fn crud_round_trip() {
    let ctx = TestContext::start().await;
    let body = json!({
        "type": "gitlab",
        "name": "gitlab-main",
        "config": {"baseUrl": "https://gitlab.example.com"},
        "authRef": "authref://vault/secret/tenants/tenant-a/ci/gitlab#token",
    });
    let created = ctx.post("/api/v1/integrations", WRITER_A, &body).await;
    let integration = created.ok(201).clone();
    let id = integration["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/integrations/{id}").as_str())
    );
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(integration["status"], "unknown");
    assert_eq!(integration["tenantId"], "tenant-a");
    assert_eq!(
        integration["authRef"],
        "authref://vault/secret/tenants/tenant-a/ci/gitlab#token"
    );

    let read = ctx
        .get(&format!("/api/v1/integrations/{id}"), READER_A)
        .await;
    assert_eq!(read.ok(200), &integration);
    assert_eq!(read.header("etag"), Some("\"1\""));

    let update =
        json!({"name": "gitlab-renamed", "config": {"baseUrl": "https://gitlab2.example.com"}});
    let updated = ctx
        .put(
            &format!("/api/v1/integrations/{id}"),
            WRITER_A,
            &update,
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!(updated.ok(200)["name"], "gitlab-renamed");
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["authRef"], serde_json::Value::Null);
    assert_eq!(updated.header("etag"), Some("\"2\""));

    let listed = ctx.get("/api/v1/integrations", READER_A).await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["nextCursor"], serde_json::Value::Null);

    let deleted = ctx
        .delete(&format!("/api/v1/integrations/{id}"), WRITER_A, &[])
        .await;
    assert_eq!(deleted.status, 204);
    ctx.get(&format!("/api/v1/integrations/{id}"), READER_A)
        .await
        .problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn type_filter_and_by_type() {
    let ctx = TestContext::start().await;
    for (name, t) in [
        ("a", "gitlab"),
        ("b", "harbor"),
        ("c", "gitlab"),
        ("d", "inmemory"),
    ] {
        ctx.create(WRITER_A, name, t).await;
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let filtered = ctx.get("/api/v1/integrations?type=gitlab", READER_A).await;
    assert_eq!(names(filtered.ok(200)), ["a", "c"]);
    let by_type = ctx
        .get("/api/v1/integrations/by-type/gitlab", READER_A)
        .await;
    assert_eq!(names(by_type.ok(200)), ["a", "c"]);
    let none = ctx
        .get("/api/v1/integrations/by-type/oci_registry", READER_A)
        .await;
    assert!(names(none.ok(200)).is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn pagination_across_pages() {
    let ctx = TestContext::start().await;
    for i in 0..7 {
        ctx.create(WRITER_A, &format!("i{i}"), "inmemory").await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/integrations?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = ctx.get(&path, READER_A).await;
        let body = page.ok(200);
        pages += 1;
        for item in body["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_owned());
        }
        match body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/integrations?limit=3&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]);
    // A page size above the cap is refused, and so is a forged cursor.
    ctx.get("/api/v1/integrations?limit=201", READER_A)
        .await
        .problem(400);
    ctx.get("/api/v1/integrations?cursor=bm9wZQ", READER_A)
        .await
        .problem(400);
    ctx.cleanup().await;
}

#[tokio::test]
async fn soft_delete_keeps_the_audit_trail() {
    let ctx = TestContext::start().await;
    let created = ctx.create(WRITER_A, "doomed", "inmemory").await;
    let id = created["id"].as_str().unwrap();
    ctx.delete(&format!("/api/v1/integrations/{id}"), WRITER_A, &[])
        .await
        .ok(204);
    ctx.get(&format!("/api/v1/integrations/{id}"), READER_A)
        .await
        .problem(404);
    let listed = ctx.get("/api/v1/integrations", READER_A).await;
    assert!(listed.ok(200)["items"].as_array().unwrap().is_empty());
    ctx.delete(&format!("/api/v1/integrations/{id}"), WRITER_A, &[])
        .await
        .problem(404);

    let trail = ctx
        .get(&format!("/api/v1/audit?integrationId={id}"), READER_A)
        .await;
    let items = trail.ok(200)["items"].as_array().unwrap().clone();
    let actions: Vec<_> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["integration.delete", "integration.create"]);
    assert_eq!(items[0]["actor"], "apikey:writer-a");
    assert_eq!(items[0]["details"]["before"]["name"], "doomed");
    assert_eq!(items[0]["details"]["after"], serde_json::Value::Null);
    // The name is free again.
    ctx.create(WRITER_A, "doomed", "inmemory").await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn stale_versions_are_refused_with_412() {
    let ctx = TestContext::start().await;
    let created = ctx.create(WRITER_A, "versioned", "inmemory").await;
    let path = format!("/api/v1/integrations/{}", created["id"].as_str().unwrap());
    let update = json!({"name": "v2", "config": {}});
    ctx.put(&path, WRITER_A, &update, &[("If-Match", "\"1\"")])
        .await
        .ok(200);
    let stale = ctx
        .put(
            &path,
            WRITER_A,
            &json!({"name": "v3"}),
            &[("If-Match", "\"1\"")],
        )
        .await;
    stale.problem(412);
    ctx.put(
        &path,
        WRITER_A,
        &json!({"name": "v3"}),
        &[("If-Match", "\"bogus\"")],
    )
    .await
    .problem(412);
    ctx.delete(&path, WRITER_A, &[("If-Match", "\"1\"")])
        .await
        .problem(412);
    // Unconditional and wildcard updates apply to the current version.
    ctx.put(
        &path,
        WRITER_A,
        &json!({"name": "v3"}),
        &[("If-Match", "*")],
    )
    .await
    .ok(200);
    ctx.put(&path, WRITER_A, &json!({"name": "v4"}), &[])
        .await
        .ok(200);
    let current = ctx.get(&path, READER_A).await;
    assert_eq!(current.ok(200)["version"], 4);
    ctx.delete(&path, WRITER_A, &[("If-Match", "\"4\"")])
        .await
        .ok(204);
    ctx.cleanup().await;
}

#[tokio::test]
async fn audit_trail_pages_newest_first_and_redacts() {
    let ctx = TestContext::start().await;
    for i in 0..3 {
        ctx.create(ADMIN_A, &format!("a{i}"), "inmemory").await;
    }
    let first = ctx.get("/api/v1/audit?limit=2", READER_A).await;
    let body = first.ok(200).clone();
    assert_eq!(body["items"][0]["details"]["after"]["name"], "a2");
    assert_eq!(body["items"][0]["actor"], "apikey:admin-a");
    let cursor = body["nextCursor"].as_str().unwrap();
    let second = ctx
        .get(&format!("/api/v1/audit?limit=2&cursor={cursor}"), READER_A)
        .await;
    let items = second.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["details"]["after"]["name"], "a0");
    ctx.cleanup().await;
}

#[tokio::test]
async fn probes_answer() {
    let ctx = TestContext::start().await;
    let live = ctx
        .call(reqwest::Method::GET, "/healthz", None, None, &[])
        .await;
    assert_eq!(live.ok(200)["status"], "ok");
    let ready = ctx
        .call(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(ready.ok(200)["status"], "ok");
    let docs = ctx.client.get(ctx.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    ctx.cleanup().await;
}

/// `authRefUri` and `secretAuthRefUri`, the references' former names, are still accepted as
/// input for one release; answers use the current names only.
#[tokio::test]
async fn the_former_reference_names_are_still_accepted() {
    let ctx = TestContext::start().await;
    let reference = "authref://vault/secret/tenants/tenant-a/ci/gitlab#token";
    let body = json!({"type": "inmemory", "name": "old-name", "authRefUri": reference});
    let created = ctx.post("/api/v1/integrations", WRITER_A, &body).await;
    let integration = created.ok(201).clone();
    assert_eq!(integration["authRef"], reference);
    assert!(integration.get("authRefUri").is_none(), "{integration}");

    let id = integration["id"].as_str().unwrap().to_owned();
    let other = "authref://vault/secret/tenants/tenant-a/ci/other#token";
    let both = json!({"type": "inmemory", "name": "old-name", "authRef": other,
                      "authRefUri": reference});
    let refused = ctx
        .put(&format!("/api/v1/integrations/{id}"), WRITER_A, &both, &[])
        .await;
    assert_eq!(refused.problem(422)["errors"][0]["field"], "authRef");
    let same = json!({"type": "inmemory", "name": "old-name", "authRef": reference,
                      "authRefUri": reference});
    ctx.put(&format!("/api/v1/integrations/{id}"), WRITER_A, &same, &[])
        .await
        .ok(200);

    let secret = "authref://vault/secret/tenants/tenant-a/hooks#pager";
    let subscription = json!({"name": "old-secret", "targetUrl": "https://192.0.2.10/in",
                              "secretAuthRefUri": secret});
    let ctx_allowing = TestContext::start_with(|c| {
        c.connectors.outbound.allow_private_networks = vec!["192.0.2.0/24".into()];
    })
    .await;
    let created = ctx_allowing
        .post("/api/v1/webhook-subscriptions", WRITER_A, &subscription)
        .await;
    assert_eq!(created.ok(201)["secretAuthRef"], secret);
    let missing = json!({"name": "no-secret", "targetUrl": "https://192.0.2.10/in"});
    let refused = ctx_allowing
        .post("/api/v1/webhook-subscriptions", WRITER_A, &missing)
        .await;
    assert_eq!(refused.problem(422)["errors"][0]["field"], "secretAuthRef");
    ctx_allowing.cleanup().await;
    ctx.cleanup().await;
}
