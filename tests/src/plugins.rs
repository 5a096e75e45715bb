//! External plugins end to end: discovery at start-up and on demand (new, updated, removed,
//! invalid), validation through the plugin, and monitoring by the health engine, with the
//! reference Jenkins plugin against a loopback Jenkins.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Response, Route, Server, get, handler};
use serde_json::{Value, json};

use crate::context::{ADMIN_A, READER_A, TestContext, WRITER_A};

#[handler]
fn jenkins_api() -> Response {
    Response::builder()
        .header("X-Jenkins", "2.440.1")
        .content_type("application/json")
        .body(r#"{"quietingDown": false, "jobs": [{"name": "build", "url": "http://ci/job/build/"}]}"#)
}

async fn jenkins() -> SocketAddr {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(
        Server::new_with_acceptor(acceptor).run(Route::new().at("/api/json", get(jenkins_api))),
    );
    addr
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // fs::copy keeps the permission bits, so the executable stays executable.
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn plugin_types(listing: &Value) -> Vec<(String, bool)> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["providerType"].as_str().unwrap().to_owned(),
                p["builtin"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn discovered_plugins_are_validated_monitored_updated_and_removed() {
    let jenkins = jenkins().await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/jenkins");
    copy_dir(&reference, &plugins.join("jenkins"));
    let plugins_dir = plugins.clone();
    let ctx = TestContext::start_with(move |c| {
        c.plugins.dirs = vec![plugins_dir];
        c.health.interval_seconds = 1;
        c.health.writer_flush_ms = 20;
    })
    .await;

    // Discovered at start-up, listed with its schema, and recorded.
    let listed = ctx.get("/api/v1/integrations/plugins", READER_A).await;
    assert!(plugin_types(listed.ok(200)).contains(&("jenkins".into(), false)));
    let jenkins_entry = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["providerType"] == "jenkins")
        .unwrap()
        .clone();
    assert_eq!(
        jenkins_entry["configSchema"]["required"],
        json!(["baseUrl"])
    );
    assert_eq!(jenkins_entry["pluginId"], "jenkins");

    // Rediscovery without changes changes nothing.
    let again = ctx
        .post("/api/v1/integrations/plugins/discover", ADMIN_A, &json!({}))
        .await;
    assert_eq!(again.ok(200)["unchanged"], json!(["jenkins"]));
    assert_eq!(again.body["added"], json!([]));

    // The plugin validates configurations, and monitors its integrations.
    let bad = json!({"type": "jenkins", "name": "ci", "config": {"baseUrl": format!("http://{jenkins}"), "colour": "blue"}});
    ctx.post("/api/v1/integrations", WRITER_A, &bad)
        .await
        .problem(422);
    let good = json!({"type": "jenkins", "name": "ci", "config": {"baseUrl": format!("http://{jenkins}")}});
    let created = ctx
        .post("/api/v1/integrations?verify=true", WRITER_A, &good)
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
    assert!(check.body["message"].as_str().unwrap().contains("2.440.1"));
    let mut healthy = false;
    for _ in 0..100 {
        let row = ctx
            .get(&format!("/api/v1/integrations/{id}"), READER_A)
            .await;
        if row.ok(200)["status"] == "healthy" {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        healthy,
        "the health engine monitors the plugin's integration"
    );

    // A changed manifest is an update; a broken plugin folder is rejected with its reason.
    let manifest = plugins.join("jenkins/plugin.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("version = \"1.0.0\"", "version = \"1.0.1\"");
    std::fs::write(&manifest, text).unwrap();
    std::fs::create_dir_all(plugins.join("broken")).unwrap();
    std::fs::write(plugins.join("broken/plugin.toml"), "id = 3").unwrap();
    let report = ctx
        .post("/api/v1/integrations/plugins/discover", ADMIN_A, &json!({}))
        .await;
    assert_eq!(report.ok(200)["updated"], json!(["jenkins"]));
    let rejected = report.body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["code"], "bad_manifest");
    // The integration's monitor is rebuilt on the updated plugin right after discovery.
    let mut served = false;
    for _ in 0..100 {
        let check = ctx
            .post(
                &format!("/api/v1/integrations/{id}/health-check"),
                WRITER_A,
                &json!({}),
            )
            .await;
        if check.ok(200)["status"] == "healthy" {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the updated plugin serves the integration");

    // Removed: the type is gone from the registry, the listing and validation.
    std::fs::remove_dir_all(plugins.join("jenkins")).unwrap();
    let report = ctx
        .post("/api/v1/integrations/plugins/discover", ADMIN_A, &json!({}))
        .await;
    assert_eq!(report.ok(200)["removed"], json!(["jenkins"]));
    let listed = ctx.get("/api/v1/integrations/plugins", READER_A).await;
    assert!(
        !plugin_types(listed.ok(200))
            .iter()
            .any(|(t, _)| t == "jenkins")
    );
    let again = json!({"type": "jenkins", "name": "ci2", "config": {"baseUrl": format!("http://{jenkins}")}});
    let refused = ctx.post("/api/v1/integrations", WRITER_A, &again).await;
    assert_eq!(refused.problem(422)["errors"][0]["field"], "type");
    let mut failing = false;
    for _ in 0..100 {
        let check = ctx
            .post(
                &format!("/api/v1/integrations/{id}/health-check"),
                WRITER_A,
                &json!({}),
            )
            .await;
        if check.ok(200)["reason"] == "connector_failed" {
            failing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failing,
        "an integration whose plugin is gone reports connector_failed"
    );
    ctx.cleanup().await;
}
