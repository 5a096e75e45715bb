//! Bad input gets a 4xx problem document naming the field, never a 5xx.

use reqwest::Method;
use serde_json::{Value, json};

use crate::context::{TestContext, WRITER_A};

async fn create_answer(ctx: &TestContext, body: &Value) -> crate::context::Answer {
    ctx.post("/api/v1/integrations", WRITER_A, body).await
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let ctx = TestContext::start().await;
    let long_name = "n".repeat(101);
    let big = "x".repeat(64 * 1024);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type": "nonesuch", "name": "a"}), "type"),
        (json!({"type": "inmemory", "name": ""}), "name"),
        (json!({"type": "inmemory", "name": "   "}), "name"),
        (json!({"type": "inmemory", "name": long_name}), "name"),
        (
            json!({"type": "inmemory", "name": "a", "config": [1, 2]}),
            "config",
        ),
        (
            json!({"type": "inmemory", "name": "a", "config": "text"}),
            "config",
        ),
        (
            json!({"type": "gitlab", "name": "a", "config": {"baseUrl": "https://g", "blob": big}}),
            "config",
        ),
        (
            json!({"type": "inmemory", "name": "a", "authRef": "https://vault/x"}),
            "authRef",
        ),
        (
            json!({"type": "inmemory", "name": "a", "authRef": "authref://s3/x"}),
            "authRef",
        ),
        (
            json!({"type": "inmemory", "name": "a", "authRef": "authref://vault/"}),
            "authRef",
        ),
        (
            json!({"type": "gitlab", "name": "a", "config": {"baseUrl": "ftp://g"}}),
            "config.baseUrl",
        ),
        (
            json!({"type": "gitlab", "name": "a", "config": {"baseUrl": "https://g", "token": "glpat-123"}}),
            "config.token",
        ),
        (
            json!({"type": "harbor", "name": "a", "config": {"baseUrl": "https://h", "password": "p"}}),
            "config.password",
        ),
        (
            json!({"type": "github_app", "name": "a", "config": {"installationId": 1, "appId": 2, "privateKey": "-----BEGIN"}}),
            "config.privateKey",
        ),
        (
            json!({"type": "github_app", "name": "a", "config": {"installationId": 1, "auth": {"clientSecret": "s"}}}),
            "config.auth.clientSecret",
        ),
    ];
    for (body, field) in cases {
        let answer = create_answer(&ctx, &body).await;
        let problem = answer.problem(422);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors for {body}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}");
    }
    // The raw-secret problem tells the caller what to do instead.
    let secret = create_answer(&ctx, &json!({"type": "gitlab", "name": "a", "config": {"baseUrl": "https://g", "token": "glpat-123"}})).await;
    assert!(secret.body["detail"].as_str().unwrap().contains("authRef"));
    assert!(
        !secret.body.to_string().contains("glpat-123"),
        "the secret was echoed"
    );
    // Nothing was stored.
    let listed = ctx.get("/api/v1/integrations", WRITER_A).await;
    assert!(listed.ok(200)["items"].as_array().unwrap().is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn duplicate_names_are_409() {
    let ctx = TestContext::start().await;
    ctx.create(WRITER_A, "same", "inmemory").await;
    let clash = create_answer(&ctx, &json!({"type": "inmemory", "name": "same"})).await;
    assert_eq!(clash.problem(409)["errors"][0]["field"], "name");
    // Renaming onto a taken name conflicts too.
    let other = ctx.create(WRITER_A, "other", "inmemory").await;
    let path = format!("/api/v1/integrations/{}", other["id"].as_str().unwrap());
    ctx.put(&path, WRITER_A, &json!({"name": "same"}), &[])
        .await
        .problem(409);
    ctx.cleanup().await;
}

#[tokio::test]
async fn malformed_requests_are_400_413_or_415() {
    let ctx = TestContext::start().await;
    let raw = |body: &'static str, content_type: &'static str| {
        ctx.client
            .post(ctx.url("/api/v1/integrations"))
            .bearer_auth(WRITER_A)
            .header("content-type", content_type)
            .body(body)
    };
    for (body, status) in [
        ("{\"type\": \"inmemory\",", 400),
        ("[]", 400),
        (
            "{\"type\": \"inmemory\", \"name\": \"a\", \"extra\": 1}",
            400,
        ),
        ("{\"type\": [\"inmemory\"], \"name\": \"a\"}", 400),
        ("{\"type\": 5, \"name\": \"a\"}", 422),
        ("{\"name\": \"a\"}", 400),
    ] {
        let answer =
            crate::context::answer(raw(body, "application/json").send().await.unwrap()).await;
        answer.problem(status);
    }
    let unknown_field = crate::context::answer(
        raw(
            "{\"type\": \"inmemory\", \"name\": \"a\", \"extra\": 1}",
            "application/json",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert!(
        unknown_field.body["detail"]
            .as_str()
            .unwrap()
            .contains("extra")
    );
    let wrong_type =
        crate::context::answer(raw("type=inmemory", "text/plain").send().await.unwrap()).await;
    assert!(
        [400, 415].contains(&wrong_type.status.as_u16()),
        "{wrong_type:?}"
    );
    wrong_type.problem(wrong_type.status.as_u16());
    // A body over the limit, with and without Content-Length.
    let huge = "x".repeat(300 * 1024);
    let answer = crate::context::answer(
        ctx.client
            .post(ctx.url("/api/v1/integrations"))
            .bearer_auth(WRITER_A)
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.problem(413);
    let streamed = crate::context::answer(
        ctx.client
            .post(ctx.url("/api/v1/integrations"))
            .bearer_auth(WRITER_A)
            .header("content-type", "application/json")
            .body(chunked(huge))
            .send()
            .await
            .unwrap(),
    )
    .await;
    streamed.problem(413);
    // Bad path and query parameters.
    ctx.get("/api/v1/integrations/not-a-uuid", WRITER_A)
        .await
        .problem(400);
    ctx.get("/api/v1/integrations?limit=0", WRITER_A)
        .await
        .problem(400);
    ctx.get("/api/v1/integrations?limit=abc", WRITER_A)
        .await
        .problem(400);
    ctx.get("/api/v1/audit?integrationId=nope", WRITER_A)
        .await
        .problem(400);
    // Unknown routes and methods are problems too.
    ctx.get("/api/v1/nothing-here", WRITER_A).await.problem(404);
    let method = ctx
        .call(Method::PATCH, "/api/v1/audit", Some(WRITER_A), None, &[])
        .await;
    method.problem(405);
    ctx.cleanup().await;
}

/// A body sent in chunks, without Content-Length.
fn chunked(body: String) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(16 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(tokio_stream::iter(chunks))
}

/// Asserts a 422 `validation_failed` naming `location`, without the offending value.
#[track_caller]
fn assert_nul_refused(answer: &crate::context::Answer, location: &str, case: &str) {
    let problem = answer.problem(422);
    assert_eq!(problem["code"], "validation_failed", "{case}: {answer:?}");
    assert_eq!(
        problem["errors"][0]["field"], location,
        "{case}: {answer:?}"
    );
    assert!(
        !problem.to_string().contains("\\u0000") && !problem.to_string().contains("%00"),
        "{case}: the value was echoed: {problem}"
    );
}

/// PostgreSQL refuses U+0000 in text; the daemon refuses it at the edge instead of failing
/// the request with a 500 when it reaches the database.
#[tokio::test]
async fn nul_characters_are_422_never_5xx() {
    let ctx = TestContext::start().await;
    let integration = ctx.create(WRITER_A, "plain", "inmemory").await;
    let id = integration["id"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now();
    let window = |reason: &str| {
        json!({"startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(), "reason": reason})
    };
    let subscription = |name: &str, event_type: &str| {
        json!({"name": name, "targetUrl": "https://93.184.215.14/hook",
            "eventTypes": [event_type], "secretAuthRef": "authref://vault/secret/tenants/tenant-a/hooks#pager"})
    };
    let bodies: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/v1/integrations".into(),
            json!({"type": "inmemory", "name": "a\u{0}b"}),
        ),
        (
            Method::POST,
            "/api/v1/integrations".into(),
            json!({"type": "gitlab", "name": "a",
                "config": {"baseUrl": "https://gitlab.example.com/\u{0}"}}),
        ),
        (
            Method::POST,
            "/api/v1/integrations".into(),
            json!({"type": "gitlab", "name": "a",
                "config": {"baseUrl": "https://g", "membership\u{0}": true}}),
        ),
        (
            Method::PUT,
            format!("/api/v1/integrations/{id}"),
            json!({"name": "b", "config": {"behaviour": "healthy", "pattern": ["h", "\u{0}"]}}),
        ),
        (
            Method::POST,
            "/api/v1/webhook-subscriptions".into(),
            subscription("pager\u{0}", "dev.stellaops.integration.health.*"),
        ),
        (
            Method::POST,
            "/api/v1/webhook-subscriptions".into(),
            subscription("pager", "dev.\u{0}"),
        ),
        (
            Method::POST,
            format!("/api/v1/integrations/{id}/maintenance-windows"),
            window("upgrade\u{0}"),
        ),
    ];
    for (method, path, body) in &bodies {
        let case = format!("{method} {path} {body}");
        let answer = ctx
            .call(method.clone(), path, Some(WRITER_A), Some(body), &[])
            .await;
        assert_nul_refused(&answer, "body", &case);
    }
    for path in [
        "/api/v1/integrations?type=a%00b",
        "/api/v1/integrations?cursor=%00",
        "/api/v1/integrations?limit=1&cursor=x%00",
        "/api/v1/audit?integrationId=%00",
        "/api/v1/webhook-subscriptions?cursor=%00",
    ] {
        assert_nul_refused(&ctx.get(path, WRITER_A).await, "query", path);
    }
    for path in [
        "/api/v1/integrations/%00".to_owned(),
        "/api/v1/integrations/by-type/a%00b".to_owned(),
        format!("/api/v1/integrations/{id}%00"),
        "/api/v1/webhook-subscriptions/%00".to_owned(),
        format!("/api/v1/integrations/{id}/maintenance-windows/%00"),
    ] {
        assert_nul_refused(&ctx.get(&path, WRITER_A).await, "path", &path);
    }
    assert_nul_refused(
        &ctx.delete("/api/v1/integrations/%00", WRITER_A, &[]).await,
        "path",
        "DELETE",
    );
    // The refusal comes before authentication: nothing of the request is looked at.
    assert_nul_refused(
        &ctx.call(Method::GET, "/api/v1/integrations/%00", None, None, &[])
            .await,
        "path",
        "anonymous",
    );

    // An escaped backslash followed by `u0000` is six ordinary characters, not a NUL.
    let escaped = ctx
        .post(
            "/api/v1/integrations",
            WRITER_A,
            &json!({"type": "inmemory", "name": "a\\u0000b"}),
        )
        .await;
    assert_eq!(escaped.ok(201)["name"], "a\\u0000b");
    let encoded = ctx.get("/api/v1/integrations?type=a%2500b", WRITER_A).await;
    assert!(encoded.ok(200)["items"].as_array().unwrap().is_empty());
    // Nor can a header carry one: the HTTP parser refuses the request before the daemon
    // sees it (which is why the edge checks need not look at headers). The same request
    // without the NUL is well-formed: a stale If-Match makes it a 412.
    for (header, status) in [
        ("If-Match: \"7\"", "412"),
        ("If-Match: \"1\u{0}\"", "400"),
        ("X-Anything: a\u{0}b", "400"),
    ] {
        let body = r#"{"name": "plain"}"#;
        let request = format!(
            "PUT /api/v1/integrations/{id} HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {WRITER_A}\r\n{header}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let status_line = raw_exchange(ctx.addr, request.as_bytes()).await;
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status}")),
            "{header:?}: {status_line}"
        );
    }
    // A raw NUL byte is not JSON at all.
    let raw = ctx
        .client
        .post(ctx.url("/api/v1/integrations"))
        .bearer_auth(WRITER_A)
        .header("content-type", "application/json")
        .body(&b"{\"type\": \"inmemory\", \"name\": \"a\x00b\"}"[..])
        .send()
        .await
        .unwrap();
    crate::context::answer(raw).await.problem(400);

    // Nothing with a NUL was stored, and the integration is unchanged.
    let listed = ctx.get("/api/v1/integrations", WRITER_A).await;
    let names: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["plain", "a\\u0000b"]);
    let subscriptions = ctx.get("/api/v1/webhook-subscriptions", WRITER_A).await;
    assert_eq!(subscriptions.ok(200)["items"], json!([]));
    let windows = ctx
        .get(
            &format!("/api/v1/integrations/{id}/maintenance-windows"),
            WRITER_A,
        )
        .await;
    assert_eq!(windows.ok(200)["items"], json!([]));
    ctx.cleanup().await;
}

/// Sends `request` as is and returns the status line of the answer.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}
