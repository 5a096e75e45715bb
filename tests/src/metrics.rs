//! `/metrics` protection: a bearer token of its own, and a listener of its own.

use reqwest::StatusCode;

use crate::context::{ADMIN_A, Answer, TestContext, answer};

const TOKEN: &str = "metrics-token-for-the-scraper";

/// `GET url` with this `Authorization` header, if any.
async fn scrape(ctx: &TestContext, url: &str, authorization: Option<&str>) -> Answer {
    let mut request = ctx.client.get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    answer(request.send().await.expect("request sent")).await
}

#[track_caller]
fn assert_metrics(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{answer:?}"
    );
    let text = answer.body.as_str().unwrap_or_default();
    assert!(text.contains("process_heap_bytes{"), "not metrics: {text}");
}

#[track_caller]
fn assert_refused(answer: &Answer) {
    answer.problem(401);
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer")),
        "{answer:?}"
    );
    assert!(
        !answer.body.to_string().contains("process_heap_bytes"),
        "{answer:?}"
    );
}

/// A token file that outlives the daemon's start-up.
fn token_file(token: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{token}\n")).unwrap();
    file
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    let file = token_file(TOKEN);
    let ctx = TestContext::start_with(|c| {
        c.telemetry.metrics_bearer_token_file = Some(file.path().to_owned());
    })
    .await;
    let url = ctx.metrics_url();
    assert_eq!(url, ctx.url("/metrics"), "on the main listener");
    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer metrics-token-for-the-scrape"),
        Some("Bearer metrics-token-for-the-scraper2"),
        Some(&*format!("Basic {TOKEN}")),
        Some(TOKEN),
        // An API key, even an administrator's, is not the metrics token.
        Some(&*format!("Bearer {ADMIN_A}")),
    ] {
        assert_refused(&scrape(&ctx, &url, authorization).await);
    }
    assert_metrics(&scrape(&ctx, &url, Some(&format!("Bearer {TOKEN}"))).await);
    assert_metrics(&scrape(&ctx, &url, Some(&format!("bearer {TOKEN}"))).await);
    // The token opens nothing else.
    let api = scrape(
        &ctx,
        &ctx.url("/api/v1/integrations"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    api.problem(401);
    ctx.cleanup().await;
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let ctx = TestContext::start_with(|c| {
        c.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics_addr = ctx
        .daemon
        .as_ref()
        .and_then(daemon::Running::metrics_addr)
        .expect("a metrics listener");
    assert_ne!(metrics_addr.port(), 0);
    assert_ne!(metrics_addr, ctx.addr);
    // Not on the main listener any more; the API still is.
    scrape(&ctx, &ctx.url("/metrics"), None).await.problem(404);
    ctx.get("/api/v1/integrations", ADMIN_A).await.ok(200);
    assert_metrics(&scrape(&ctx, &ctx.metrics_url(), None).await);
    // The metrics listener serves nothing else.
    let elsewhere = format!("http://{metrics_addr}/api/v1/integrations");
    let api = ctx.client.get(elsewhere).bearer_auth(ADMIN_A).send().await;
    answer(api.unwrap()).await.problem(404);
    let healthz = format!("http://{metrics_addr}/healthz");
    answer(ctx.client.get(healthz).send().await.unwrap())
        .await
        .problem(404);
    ctx.cleanup().await;
    // Shutting down closes it too.
    let after = reqwest::Client::new()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await;
    assert!(after.is_err(), "{after:?}");
}

#[tokio::test]
async fn a_listener_of_their_own_and_a_token_combine() {
    let file = token_file(TOKEN);
    let ctx = TestContext::start_with(|c| {
        c.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.telemetry.metrics_bearer_token_file = Some(file.path().to_owned());
    })
    .await;
    let url = ctx.metrics_url();
    assert_ne!(url, ctx.url("/metrics"));
    assert_refused(&scrape(&ctx, &url, None).await);
    assert_refused(&scrape(&ctx, &url, Some("Bearer wrong")).await);
    assert_metrics(&scrape(&ctx, &url, Some(&format!("Bearer {TOKEN}"))).await);
    let main = scrape(&ctx, &ctx.url("/metrics"), Some(&format!("Bearer {TOKEN}"))).await;
    main.problem(404);
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_missing_or_empty_token_file_stops_the_start() {
    daemon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let database_url = actors::db::testing::fresh_url(dir.path()).await;
    for path in [dir.path().join("missing"), empty] {
        let mut config = daemon::config::Config::default();
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.database.url = database_url.clone();
        config.telemetry.metrics_bearer_token_file = Some(path.clone());
        let Err(error) = daemon::start(config).await else {
            panic!("the daemon started with the metrics token file {path:?}");
        };
        assert!(
            matches!(error, daemon::Error::MetricsToken { .. }),
            "{error:?}"
        );
    }
}
