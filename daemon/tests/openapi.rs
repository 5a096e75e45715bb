//! `openapi.json` at the repository root is generated from the code. When an operation or type
//! changes, regenerate it with `EXPECTORATE=overwrite cargo test -p daemon --test openapi`.

#[test]
fn openapi_json_is_up_to_date() {
    let spec = daemon::api::spec_json();
    expectorate::assert_contents("../openapi.json", &format!("{spec}\n"));
}

/// Every operation under `/api` is protected by the bearer scheme; the only open ones are the
/// probes, named here.
#[test]
fn every_api_operation_requires_a_bearer_token() {
    const OPEN: [&str; 2] = ["/healthz", "/readyz"];
    let spec: serde_json::Value = serde_json::from_str(&daemon::api::spec_json()).unwrap();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("BearerAuth").is_some()));
            if OPEN.contains(&path.as_str()) {
                assert!(!secured, "{method} {path} is listed as open");
            } else {
                assert!(path.starts_with("/api/"), "{path} is outside /api");
                assert!(secured, "{method} {path} has no bearer security");
            }
        }
    }
}

fn operations() -> Vec<(String, String, serde_json::Value)> {
    let spec: serde_json::Value = serde_json::from_str(&daemon::api::spec_json()).unwrap();
    let mut all = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

fn declares(operation: &serde_json::Value, status: u16) -> bool {
    operation["responses"].get(status.to_string()).is_some()
}

/// The statuses no handler decides but every operation of a kind can meet are declared: the
/// bearer scheme's (401, 403, 429, and 500/503 when the key store fails), parameter parsing's
/// (400, and 422 for a NUL the edge refuses), a JSON body's (400, 413, 415, 422). The
/// statuses handlers decide are checked where they are returned (`Problems`).
#[test]
fn operations_declare_the_statuses_of_their_inputs() {
    for (method, path, operation) in operations() {
        let mut expected = Vec::new();
        if operation.get("security").is_some() {
            expected.extend([401, 403, 429, 500, 503]);
        }
        let parameters = operation["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty());
        if parameters {
            expected.extend([400, 422]);
        }
        if operation.get("requestBody").is_some() {
            expected.extend([400, 413, 415, 422]);
        }
        for status in expected {
            assert!(
                declares(&operation, status),
                "{method} {path} does not declare {status}"
            );
        }
        assert!(
            !declares(&operation, 501),
            "{method} {path} declares 501, which no operation answers"
        );
    }
}

/// Every response is described, and every 201 says where the new object is.
#[test]
fn responses_are_described_and_creations_located() {
    for (method, path, operation) in operations() {
        for (status, response) in operation["responses"].as_object().unwrap() {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {status} has no description"
            );
        }
        if path.ends_with("/{id}/webhooks") && method == "post" {
            // A webhook set up on the provider: the hub keeps no copy to point at, so it is
            // not a creation of the hub's (200, no Location).
            assert!(
                operation["responses"].get("201").is_none(),
                "{method} {path}"
            );
            assert!(
                operation["responses"].get("200").is_some(),
                "{method} {path}"
            );
        }
        if let Some(created) = operation["responses"].get("201") {
            assert!(
                created["headers"].get("Location").is_some(),
                "{method} {path} 201 has no Location"
            );
            assert!(
                created.get("links").is_some(),
                "{method} {path} 201 links to nothing"
            );
        }
    }
}

/// Every request body has an example, and the document has a server, a licence and a
/// contact.
#[test]
fn the_document_has_examples_servers_and_licence() {
    for (method, path, operation) in operations() {
        if let Some(body) = operation.get("requestBody") {
            assert!(
                body["content"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|media_type| media_type.get("example").is_some()),
                "{method} {path} has a request body without an example"
            );
        }
    }
    let spec: serde_json::Value = serde_json::from_str(&daemon::api::spec_json()).unwrap();
    assert_eq!(spec["servers"][0]["url"], "/");
    assert_eq!(spec["info"]["license"]["name"], "AGPL-3.0-or-later");
    assert!(spec["info"]["contact"]["url"].is_string());
}
