//! Secrets are never accepted in URLs, and refusals never repeat what was refused.
//!
//! Every URL the daemon is given (an integration's config, a webhook subscription's target, a
//! provider webhook's target) is refused with 422 when it carries userinfo, a fragment or a
//! credential-like query parameter, and the whole answer is checked for the secret's text.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::context::{READER_A, TestContext, WRITER_A};

/// The text every refused value carries; no answer may contain it.
const SECRET: &str = "SECRETVALUE";

/// URLs that carry (or may carry) a credential.
const SECRET_URLS: [&str; 7] = [
    "https://gitlab.example.com/?private_token=glpat-SECRETVALUE",
    "https://gitlab.example.com/?access_token=SECRETVALUE",
    "https://gitlab.example.com/api?per_page=100&X-Amz-Signature=SECRETVALUE",
    "https://gitlab.example.com/#frag-SECRETVALUE",
    "https://user:SECRETVALUE@gitlab.example.com/",
    "https://SECRETVALUE@gitlab.example.com/",
    "https://gitlab.example.com/?SECRETVALUE_token=x",
];

/// A public address literal, so that checking a subscription's target needs no DNS.
const PUBLIC_TARGET: &str = "https://93.184.215.14/hook";

const SECRET_REF: &str = "authref://vault/secret/tenants/tenant-a/hooks#signing";

/// An answer with its body as the exact text sent.
struct Raw {
    status: StatusCode,
    content_type: Option<String>,
    text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Asserts a problem+json answer with `status` that does not contain [`SECRET`], and
    /// returns its body.
    #[track_caller]
    fn refused(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{what}: {}", self.text);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(
            !self.text.contains(SECRET),
            "{what}: the secret was echoed: {}",
            self.text
        );
        self.json()
    }

    /// Asserts a 422 naming `field` alone, without echoing the secret.
    #[track_caller]
    fn invalid(&self, field: &str, what: &str) {
        let problem = self.refused(422, what);
        assert_eq!(problem["code"], "validation_failed", "{what}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no errors in {problem}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{what}");
    }
}

async fn raw(ctx: &TestContext, method: Method, path: &str, body: &Value) -> Raw {
    let response = ctx
        .client
        .request(method, ctx.url(path))
        .bearer_auth(WRITER_A)
        .json(body)
        .send()
        .await
        .expect("request sent");
    Raw {
        status: response.status(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        text: response.text().await.expect("body read"),
    }
}

/// A daemon that checks no health (the integrations point at hosts that do not exist).
async fn start() -> TestContext {
    TestContext::start_with(|c| c.health.enabled = false).await
}

async fn gitlab(ctx: &TestContext, name: &str) -> String {
    let body = json!({"type": "gitlab", "name": name,
        "config": {"baseUrl": "https://gitlab.example.com"}});
    ctx.post("/api/v1/integrations", WRITER_A, &body)
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

// === tests ===

#[tokio::test]
async fn integration_configs_with_secrets_in_urls_are_refused() {
    let ctx = start().await;
    for url in SECRET_URLS {
        let body = json!({"type": "gitlab", "name": "g", "config": {"baseUrl": url}});
        raw(&ctx, Method::POST, "/api/v1/integrations", &body)
            .await
            .invalid("config.baseUrl", url);
        // Any URL in the config, however deep and whatever its field is called.
        for (config, field) in [
            (
                json!({"baseUrl": "https://gitlab.example.com", "apiUrl": url}),
                "config.apiUrl",
            ),
            (
                json!({"baseUrl": "https://gitlab.example.com", "mirrors": [{"url": url}]}),
                "config.mirrors[0].url",
            ),
        ] {
            let body = json!({"type": "gitlab", "name": "g", "config": config});
            raw(&ctx, Method::POST, "/api/v1/integrations", &body)
                .await
                .invalid(field, url);
        }
    }
    // Every provider's URL field.
    for (provider_type, config, field) in [
        (
            "harbor",
            json!({"baseUrl": "https://u:SECRETVALUE@harbor.example.com"}),
            "config.baseUrl",
        ),
        (
            "oci_registry",
            json!({"baseUrl": "https://ghcr.example.com/?token=SECRETVALUE"}),
            "config.baseUrl",
        ),
        (
            "github_app",
            json!({"installationId": 1, "appId": 2,
                "apiBaseUrl": "https://ghe.example.com/api/v3#SECRETVALUE"}),
            "config.apiBaseUrl",
        ),
    ] {
        let body = json!({"type": provider_type, "name": "p", "config": config});
        raw(&ctx, Method::POST, "/api/v1/integrations", &body)
            .await
            .invalid(field, provider_type);
    }
    // Nothing was stored.
    let listed = ctx.get("/api/v1/integrations", READER_A).await;
    assert!(listed.ok(200)["items"].as_array().unwrap().is_empty());
    ctx.cleanup().await;
}

#[tokio::test]
async fn integration_updates_with_secrets_in_urls_are_refused() {
    let ctx = start().await;
    let id = gitlab(&ctx, "g").await;
    let path = format!("/api/v1/integrations/{id}");
    for url in SECRET_URLS {
        let body = json!({"name": "g", "config": {"baseUrl": url}});
        raw(&ctx, Method::PUT, &path, &body)
            .await
            .invalid("config.baseUrl", url);
    }
    let body = json!({"name": "g", "config": {"baseUrl": "https://gitlab.example.com"},
        "authRef": "authref://user:SECRETVALUE@vault/x#k"});
    raw(&ctx, Method::PUT, &path, &body)
        .await
        .invalid("authRef", "authRef");
    // Unchanged.
    let read = ctx.get(&path, READER_A).await;
    assert_eq!(
        read.ok(200)["config"]["baseUrl"],
        "https://gitlab.example.com"
    );
    assert_eq!(read.body["version"], 1, "{:?}", read.body);
    ctx.cleanup().await;
}

#[tokio::test]
async fn auth_refs_carrying_credentials_are_refused_without_echo() {
    let ctx = start().await;
    for reference in [
        "authref://user:SECRETVALUE@vault/x#k",
        "authref://SECRETVALUE@vault/x",
        "authref://SECRETVALUE/x",
        "SECRETVALUE",
    ] {
        let body = json!({"type": "gitlab", "name": "g",
            "config": {"baseUrl": "https://gitlab.example.com"}, "authRef": reference});
        raw(&ctx, Method::POST, "/api/v1/integrations", &body)
            .await
            .invalid("authRef", reference);
        let body = json!({"name": "s", "targetUrl": PUBLIC_TARGET, "secretAuthRef": reference});
        raw(&ctx, Method::POST, "/api/v1/webhook-subscriptions", &body)
            .await
            .invalid("secretAuthRef", reference);
    }
    let id = gitlab(&ctx, "g").await;
    let body = json!({"target": "a/b", "url": "https://hooks.example.com/in",
        "secretAuthRef": "authref://user:SECRETVALUE@vault/x#k"});
    raw(
        &ctx,
        Method::POST,
        &format!("/api/v1/integrations/{id}/webhooks"),
        &body,
    )
    .await
    .invalid("secretAuthRef", "secretAuthRef");
    ctx.cleanup().await;
}

#[tokio::test]
async fn webhook_subscription_targets_with_secrets_are_refused() {
    let ctx = start().await;
    for url in SECRET_URLS {
        let body = json!({"name": "s", "targetUrl": url, "secretAuthRef": SECRET_REF});
        raw(&ctx, Method::POST, "/api/v1/webhook-subscriptions", &body)
            .await
            .invalid("targetUrl", url);
    }
    let body = json!({"name": "s", "targetUrl": PUBLIC_TARGET, "secretAuthRef": SECRET_REF});
    let created = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
        .await;
    let id = created.ok(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhook-subscriptions/{id}");
    for url in SECRET_URLS {
        let body = json!({"name": "s", "targetUrl": url, "secretAuthRef": SECRET_REF});
        raw(&ctx, Method::PUT, &path, &body)
            .await
            .invalid("targetUrl", url);
    }
    let read = ctx.get(&path, READER_A).await;
    assert_eq!(read.ok(200)["targetUrl"], PUBLIC_TARGET);
    assert_eq!(read.body["version"], 1, "{:?}", read.body);
    ctx.cleanup().await;
}

#[tokio::test]
async fn provider_webhook_targets_with_secrets_are_refused() {
    let ctx = start().await;
    let id = gitlab(&ctx, "g").await;
    let path = format!("/api/v1/integrations/{id}/webhooks");
    for url in SECRET_URLS {
        let body = json!({"target": "group/project", "url": url});
        raw(&ctx, Method::POST, &path, &body)
            .await
            .invalid("url", url);
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn harmless_queries_are_still_accepted() {
    let ctx = start().await;
    let body = json!({"type": "gitlab", "name": "g",
        "config": {"baseUrl": "https://gitlab.example.com/gitlab?per_page=100"}});
    let created = ctx.post("/api/v1/integrations", WRITER_A, &body).await;
    let id = created.ok(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/integrations/{id}");
    let body = json!({"name": "g",
        "config": {"baseUrl": "https://gitlab.example.com/?per_page=100&order_by=id"}});
    ctx.put(&path, WRITER_A, &body, &[]).await.ok(200);

    let target = format!("{PUBLIC_TARGET}?per_page=100");
    let body = json!({"name": "s", "targetUrl": target, "secretAuthRef": SECRET_REF});
    let sub = ctx
        .post("/api/v1/webhook-subscriptions", WRITER_A, &body)
        .await;
    assert_eq!(sub.ok(201)["targetUrl"], target);

    // The URL passes; GitLab's connector then says it cannot create webhooks.
    let body = json!({"target": "group/project",
        "url": "https://hooks.example.com/in?per_page=100"});
    let hook = ctx
        .post(
            &format!("/api/v1/integrations/{id}/webhooks"),
            WRITER_A,
            &body,
        )
        .await;
    assert_eq!(hook.problem(422)["code"], "unsupported", "{:?}", hook.body);
    ctx.cleanup().await;
}

#[tokio::test]
async fn values_of_the_wrong_type_or_unknown_are_not_echoed() {
    let ctx = start().await;
    let id = gitlab(&ctx, "g").await;
    // Wrong JSON types are 400s; the value found is not repeated.
    for (path, body) in [
        (
            "/api/v1/webhook-subscriptions".to_owned(),
            json!({"name": "s", "targetUrl": ["https://u:SECRETVALUE@h.example.com/"],
                "secretAuthRef": SECRET_REF}),
        ),
        (
            "/api/v1/webhook-subscriptions".to_owned(),
            json!({"name": "s", "targetUrl": PUBLIC_TARGET, "secretAuthRef": {"v": SECRET}}),
        ),
        (
            format!("/api/v1/integrations/{id}/maintenance-windows"),
            json!({"startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-01T01:00:00Z",
                "recurrence": SECRET}),
        ),
        (
            "/api/v1/integrations".to_owned(),
            json!({"type": "gitlab", "name": {"n": SECRET}}),
        ),
    ] {
        raw(&ctx, Method::POST, &path, &body)
            .await
            .refused(400, &body.to_string());
    }
    // Values a provider's typed config cannot parse are 422s naming the config, not echoed.
    for config in [
        json!({"baseUrl": "https://gitlab.example.com", "expiryWarningDays": SECRET}),
        json!({"baseUrl": ["https://u:SECRETVALUE@h.example.com/"]}),
        json!({"baseUrl": SECRET}),
    ] {
        let body = json!({"type": "gitlab", "name": "x", "config": config});
        raw(&ctx, Method::POST, "/api/v1/integrations", &body)
            .await
            .refused(422, &config.to_string());
    }
    let body = json!({"type": "inmemory", "name": "x", "config": {"behaviour": SECRET}});
    raw(&ctx, Method::POST, "/api/v1/integrations", &body)
        .await
        .invalid("config", "behaviour");
    // Unknown event types are named by position, not repeated.
    let body = json!({"name": "s", "targetUrl": PUBLIC_TARGET, "secretAuthRef": SECRET_REF,
        "eventTypes": [SECRET]});
    raw(&ctx, Method::POST, "/api/v1/webhook-subscriptions", &body)
        .await
        .invalid("eventTypes[0]", "eventTypes");
    ctx.cleanup().await;
}
