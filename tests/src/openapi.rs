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
