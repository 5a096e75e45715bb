//! Connectors through the API: the plugin listing, verification before save, resources, and a
//! real HTTP connector (OCI Distribution) against a loopback registry.

use std::net::SocketAddr;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Query;
use poem::{Response, Route, Server, get, handler};
use serde_json::json;

use crate::context::{READER_A, TestContext, WRITER_A};

#[derive(serde::Deserialize)]
struct CatalogParams {
    last: Option<String>,
}

#[handler]
fn ping() -> Response {
    Response::builder()
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .content_type("application/json")
        .body("{}")
}

/// Two catalog pages: `a`, `b`, then `c`.
#[handler]
fn catalog(Query(p): Query<CatalogParams>) -> Response {
    match p.last.as_deref() {
        None => Response::builder()
            .content_type("application/json")
            .header("Link", "</v2/_catalog?last=b&n=2>; rel=\"next\"")
            .body(r#"{"repositories": ["a", "b"]}"#),
        Some(_) => Response::builder()
            .content_type("application/json")
            .body(r#"{"repositories": ["c"]}"#),
    }
}

async fn registry() -> SocketAddr {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let app = Route::new()
        .at("/v2/", get(ping))
        .at("/v2/_catalog", get(catalog));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    addr
}

#[tokio::test]
async fn plugins_are_listed_with_capabilities_and_config_schemas() {
    let ctx = TestContext::start().await;
    let listed = ctx.get("/api/v1/integrations/plugins", READER_A).await;
    let plugins = listed.ok(200).as_array().unwrap().clone();
    let types: Vec<&str> = plugins
        .iter()
        .map(|p| p["providerType"].as_str().unwrap())
        .collect();
    for t in ["github_app", "gitlab", "harbor", "inmemory", "oci_registry"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    for p in &plugins {
        assert_eq!(p["configSchema"]["type"], "object", "{p}");
        assert!(
            p["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "health_check")
        );
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn verify_tests_the_configuration_before_saving() {
    let ctx = TestContext::start().await;
    let bad = json!({"type": "inmemory", "name": "v1", "config": {"behaviour": "unhealthy"}});
    let refused = ctx
        .post("/api/v1/integrations?verify=true", WRITER_A, &bad)
        .await;
    assert_eq!(refused.problem(422)["code"], "verification_failed");
    // Without verify it is stored, and shows its failure later.
    ctx.post("/api/v1/integrations", WRITER_A, &bad)
        .await
        .ok(201);
    let good = json!({"type": "inmemory", "name": "v2", "config": {}});
    ctx.post("/api/v1/integrations?verify=true", WRITER_A, &good)
        .await
        .ok(201);
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_oci_connector_checks_and_lists_a_loopback_registry() {
    let addr = registry().await;
    let ctx = TestContext::start_with(|c| {
        c.connectors.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    let body = json!({"type": "oci_registry", "name": "local", "config": {"baseUrl": format!("http://{addr}")}});
    let created = ctx
        .post("/api/v1/integrations?verify=true", WRITER_A, &body)
        .await;
    let id = created.ok(201)["id"].as_str().unwrap().to_owned();
    let check = ctx
        .post(
            &format!("/api/v1/integrations/{id}/health-check"),
            WRITER_A,
            &json!({}),
        )
        .await;
    assert_eq!(check.ok(200)["status"], "healthy", "{:?}", check.body);

    let first = ctx
        .get(&format!("/api/v1/integrations/{id}/resources"), READER_A)
        .await;
    let names: Vec<_> = first.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b")]);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = ctx
        .get(
            &format!("/api/v1/integrations/{id}/resources?cursor={cursor}"),
            READER_A,
        )
        .await;
    assert_eq!(second.ok(200)["items"][0]["name"], "c");
    assert_eq!(second.body["nextCursor"], serde_json::Value::Null);

    // No webhooks on a registry.
    let hook = json!({"target": "a", "url": "https://hooks.example.com/in"});
    assert_eq!(
        ctx.post(
            &format!("/api/v1/integrations/{id}/webhooks"),
            WRITER_A,
            &hook
        )
        .await
        .problem(422)["code"],
        "unsupported"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_targets_by_default() {
    let addr = registry().await;
    let ctx = TestContext::start().await;
    let body = json!({"type": "oci_registry", "name": "sneaky", "config": {"baseUrl": format!("http://{addr}")}});
    let refused = ctx
        .post("/api/v1/integrations?verify=true", WRITER_A, &body)
        .await;
    let problem = refused.problem(422);
    assert_eq!(problem["code"], "verification_failed");
    let created = ctx.post("/api/v1/integrations", WRITER_A, &body).await;
    let id = created.ok(201)["id"].as_str().unwrap().to_owned();
    let check = ctx
        .post(
            &format!("/api/v1/integrations/{id}/health-check"),
            WRITER_A,
            &json!({}),
        )
        .await;
    assert_eq!(check.ok(200)["status"], "unhealthy");
    assert_eq!(check.body["reason"], "network", "{:?}", check.body);
    ctx.get(&format!("/api/v1/integrations/{id}/resources"), READER_A)
        .await
        .problem(502);
    // The in-memory double cannot list resources.
    let memory = ctx.create(WRITER_A, "mem", "inmemory").await;
    let resources = ctx
        .get(
            &format!(
                "/api/v1/integrations/{}/resources",
                memory["id"].as_str().unwrap()
            ),
            READER_A,
        )
        .await;
    assert_eq!(resources.problem(422)["code"], "unsupported");
    ctx.cleanup().await;
}
