//! `Location` headers: every 201 points at a resource that can be read, and the URL is
//! absolute under `http.public_url` when it is set.

use serde_json::json;

use crate::context::{ADMIN_A, TestContext, WRITER_A};

const PUBLIC: &str = "https://hub.example.com/integrations";

/// Every creating operation answers with an absolute `Location` under the public URL, whose
/// path reads back what was created.
#[tokio::test]
async fn locations_are_absolute_under_the_public_url_and_readable() {
    let ctx = TestContext::start_with(|c| {
        c.health.enabled = false;
        // A trailing slash is not doubled.
        c.http.public_url = Some(format!("{PUBLIC}/"));
    })
    .await;
    let follow = async |answer: &crate::context::Answer| {
        let id = answer.body["id"].as_str().unwrap().to_owned();
        let location = answer.header("location").expect("a Location").to_owned();
        let path = location
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("{location} is not under {PUBLIC}"));
        assert!(
            path.starts_with("/api/v1/") && path.ends_with(&id),
            "{location}"
        );
        let read = ctx.get(path, ADMIN_A).await;
        assert_eq!(read.ok(200)["id"], id.as_str(), "{location}");
        id
    };

    let created = ctx
        .post(
            "/api/v1/integrations",
            WRITER_A,
            &json!({"type": "inmemory", "name": "located"}),
        )
        .await;
    created.ok(201);
    let integration = follow(&created).await;

    let window = ctx
        .post(
            &format!("/api/v1/integrations/{integration}/maintenance-windows"),
            WRITER_A,
            &json!({"startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-01T01:00:00Z"}),
        )
        .await;
    window.ok(201);
    let window_id = follow(&window).await;
    let read = ctx
        .get(
            &format!("/api/v1/integrations/{integration}/maintenance-windows/{window_id}"),
            ADMIN_A,
        )
        .await;
    assert_eq!(read.ok(200)["active"], false);
    assert_eq!(read.body["integrationId"], integration.as_str());

    let subscription = json!({"name": "pager", "targetUrl": "https://93.184.215.14/hook",
        "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"});
    let created = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &subscription)
        .await;
    created.ok(201);
    follow(&created).await;
    // Under the deprecated path, the Location keeps the old path, still absolute.
    let old = json!({"name": "legacy", "targetUrl": "https://93.184.215.14/hook",
        "secretRef": "authref://vault/secret/tenants/tenant-a/hooks#legacy"});
    let legacy = ctx
        .post("/api/v1/alert-subscriptions", WRITER_A, &old)
        .await;
    legacy.ok(201);
    let location = legacy.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{PUBLIC}/api/v1/alert-subscriptions/")),
        "{location}"
    );

    let key = ctx
        .post(
            "/api/v1/api-keys",
            ADMIN_A,
            &json!({"scopes": ["integrations:read"]}),
        )
        .await;
    key.ok(201);
    follow(&key).await;

    // Another tenant's window is not found through its Location.
    ctx.get(
        &format!("/api/v1/integrations/{integration}/maintenance-windows/{window_id}"),
        crate::context::WRITER_B,
    )
    .await
    .problem(404);
    ctx.cleanup().await;
}

/// Without a public URL, `Location` is the path alone.
#[tokio::test]
async fn locations_are_paths_without_a_public_url() {
    let ctx = TestContext::start().await;
    let created = ctx
        .post(
            "/api/v1/integrations",
            WRITER_A,
            &json!({"type": "inmemory", "name": "relative"}),
        )
        .await;
    let id = created.ok(201)["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/integrations/{id}").as_str())
    );
    ctx.cleanup().await;
}

/// A public URL that is not an absolute http(s) URL without credentials, query or fragment is
/// refused at start-up, and the error does not repeat it.
#[test]
fn bad_public_urls_are_refused() {
    for bad in [
        "hub.example.com",
        "ftp://hub.example.com",
        "https://user:pw@hub.example.com",
        "https://hub.example.com/?token=x",
        "https://hub.example.com/#x",
    ] {
        let mut config = daemon::config::Config::default();
        config.http.public_url = Some(bad.into());
        let error = daemon::check(&config).err().expect("refused").to_string();
        assert!(
            error.contains("public_url") && !error.contains(bad),
            "{error}"
        );
    }
    let mut config = daemon::config::Config::default();
    config.http.public_url = Some(PUBLIC.into());
    assert!(daemon::check(&config).is_ok());
}
