//! The checked-in `openapi.json` is what the daemon serves.

use crate::context::TestContext;

#[tokio::test]
async fn checked_in_openapi_matches_the_served_document() {
    let ctx = TestContext::start().await;
    let served = ctx
        .client
        .get(ctx.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served: serde_json::Value = served.json().await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        served == checked_in,
        "openapi.json is stale: regenerate it with `EXPECTORATE=overwrite cargo test -p daemon openapi`"
    );
    ctx.cleanup().await;
}

/// Each operation's document states the scope it needs (`x-required-scopes`, and in its
/// OpenID Connect requirement), and that is the scope it enforces: a key holding only the
/// scope below is refused with 403, a key holding exactly the stated one is not. Request
/// bodies are the document's own examples, so each example also parses.
#[tokio::test]
async fn every_operation_enforces_the_scope_its_document_states() {
    use crate::context::{READER_A, WRITER_A, api_key};
    const NO_SCOPE: &str = "test-key-no-scope-a";
    let ctx = TestContext::start_with(|config| {
        config
            .auth
            .api_keys
            .push(api_key("none-a", NO_SCOPE, crate::context::TENANT_A, &[]));
    })
    .await;
    let spec: serde_json::Value = ctx
        .client
        .get(ctx.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            let Some(scopes) = operation["x-required-scopes"].as_array() else {
                assert!(!path.starts_with("/api/"), "{id} states no scope");
                continue;
            };
            assert_eq!(scopes.len(), 1, "{id} states several scopes");
            assert_eq!(
                operation["security"][1]["OpenIdConnect"].as_array(),
                Some(scopes),
                "{id}: the requirement and the extension differ"
            );
            let (below, exact) = match scopes[0].as_str().unwrap() {
                "integrations:read" => (NO_SCOPE, READER_A),
                "integrations:write" => (READER_A, WRITER_A),
                "integrations:admin" => (WRITER_A, crate::context::ADMIN_A),
                other => panic!("{id}: unknown scope {other}"),
            };
            let concrete = path
                .replace("{type}", "gitlab")
                .split('/')
                .map(|segment| {
                    let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                    else {
                        return segment.to_owned();
                    };
                    let integer = operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == name && p["schema"]["type"] == "integer");
                    if integer {
                        "1".to_owned()
                    } else {
                        uuid::Uuid::new_v4().to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body = operation
                .pointer("/requestBody/content")
                .and_then(|c| c.as_object()?.values().next()?.get("example"));
            assert_eq!(
                body.is_some(),
                operation.get("requestBody").is_some(),
                "{id}: a request body without an example"
            );
            let send = |key: &str| {
                let mut request = ctx
                    .client
                    .request(method.to_uppercase().parse().unwrap(), ctx.url(&concrete))
                    .bearer_auth(key);
                if let Some(body) = body {
                    request = request.json(body);
                }
                // Only the status: an event stream's body does not end.
                async move { request.send().await.unwrap().status().as_u16() }
            };
            assert_eq!(
                send(below).await,
                403,
                "{method} {path} with a key below {scopes:?}"
            );
            let status = send(exact).await;
            assert!(
                status != 403 && status != 400 && status < 500,
                "{method} {path} with a key holding {scopes:?}: {status}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations checked");
    ctx.cleanup().await;
}
