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
