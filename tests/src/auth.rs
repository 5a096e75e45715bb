//! Authentication (API keys, JWTs) and authorisation (scopes), and rate limits.

use reqwest::Method;
use serde_json::json;

use crate::authority::{self, Signer, claims, token};
use crate::context::{ADMIN_A, READER_A, TestContext, WRITER_A};

async fn with_authority() -> TestContext {
    let jwks_url = authority::serve().await;
    TestContext::start_with(|c| c.auth.jwt = Some(authority::config(jwks_url))).await
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_401() {
    let ctx = with_authority().await;
    let no_token = ctx
        .call(Method::GET, "/api/v1/integrations", None, None, &[])
        .await;
    no_token.problem(401);
    assert!(
        no_token
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    for bad in ["nope", "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJ9.x"] {
        ctx.get("/api/v1/integrations", bad).await.problem(401);
    }
    let basic = ctx
        .call(
            Method::GET,
            "/api/v1/integrations",
            None,
            None,
            &[("Authorization", "Basic dTpw")],
        )
        .await;
    basic.problem(401);
    ctx.cleanup().await;
}

#[tokio::test]
async fn valid_jwts_from_the_authority_are_accepted() {
    let ctx = with_authority().await;
    for signer in [Signer::Rs256, Signer::Es256] {
        let jwt = token(
            signer,
            &claims("tenant-a", "integrations:read integrations:write"),
        );
        let created = ctx
            .post("/api/v1/integrations", &jwt, &json!({"type": "inmemory", "name": format!("jwt-{}", matches!(signer, Signer::Rs256))}))
            .await;
        assert_eq!(created.ok(201)["tenantId"], "tenant-a");
    }
    // The audit actor is the token's subject, and the tenant came from the `tid` claim:
    // tenant A's API key sees what the JWTs created.
    let trail = ctx.get("/api/v1/audit", READER_A).await;
    assert_eq!(trail.ok(200)["items"][0]["actor"], "user-42");
    // Scopes as an array, tenant under `tenant_id`.
    let mut c = claims("tenant-a", "");
    c.as_object_mut().unwrap().remove("tid");
    c["tenant_id"] = json!("tenant-a");
    c["scope"] = json!(["integrations:read"]);
    ctx.get("/api/v1/integrations", &token(Signer::Rs256, &c))
        .await
        .ok(200);
    ctx.cleanup().await;
}

#[tokio::test]
async fn expired_foreign_and_forged_jwts_are_401() {
    let ctx = with_authority().await;
    let now = chrono::Utc::now().timestamp();
    let cases = [
        ("expired", json!({"exp": now - 10})),
        ("not yet valid", json!({"nbf": now + 600})),
        ("wrong issuer", json!({"iss": "https://evil.test"})),
        ("wrong audience", json!({"aud": "someone-else"})),
        ("no tenant", json!({"tid": null})),
        ("bad tenant", json!({"tid": "a b"})),
    ];
    for (what, overrides) in cases {
        let mut c = claims("tenant-a", "integrations:read");
        for (k, v) in overrides.as_object().unwrap() {
            c[k] = v.clone();
        }
        let answer = ctx
            .get("/api/v1/integrations", &token(Signer::Rs256, &c))
            .await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        answer.problem(401);
    }
    let forged = token(Signer::Rogue, &claims("tenant-a", "integrations:read"));
    ctx.get("/api/v1/integrations", &forged).await.problem(401);
    ctx.cleanup().await;
}

#[tokio::test]
async fn scopes_are_enforced_with_403() {
    let ctx = with_authority().await;
    ctx.post(
        "/api/v1/integrations",
        READER_A,
        &json!({"type": "inmemory", "name": "x"}),
    )
    .await
    .problem(403);
    let created = ctx.create(WRITER_A, "x", "inmemory").await;
    let path = format!("/api/v1/integrations/{}", created["id"].as_str().unwrap());
    ctx.put(&path, READER_A, &json!({"name": "y"}), &[])
        .await
        .problem(403);
    ctx.delete(&path, READER_A, &[]).await.problem(403);
    // Plugin discovery needs the admin scope.
    ctx.post(
        "/api/v1/integrations/plugins/discover",
        WRITER_A,
        &json!({}),
    )
    .await
    .problem(403);
    ctx.post("/api/v1/integrations/plugins/discover", ADMIN_A, &json!({}))
        .await
        .ok(200);
    // A JWT without the write scope cannot write either.
    let reader_jwt = token(Signer::Es256, &claims("tenant-a", "integrations:read"));
    ctx.post(
        "/api/v1/integrations",
        &reader_jwt,
        &json!({"type": "inmemory", "name": "z"}),
    )
    .await
    .problem(403);
    // No scope at all cannot even read.
    let nothing = token(Signer::Es256, &claims("tenant-a", "openid profile"));
    ctx.get("/api/v1/integrations", &nothing).await.problem(403);
    ctx.cleanup().await;
}

#[tokio::test]
async fn each_token_is_rate_limited_with_429_and_retry_after() {
    let ctx = TestContext::start_with(|c| {
        c.auth.rate_limit.per_second = 1;
        c.auth.rate_limit.burst = 3;
    })
    .await;
    for _ in 0..3 {
        ctx.get("/api/v1/integrations", READER_A).await.ok(200);
    }
    let limited = ctx.get("/api/v1/integrations", READER_A).await;
    limited.problem(429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another token has its own budget.
    ctx.get("/api/v1/integrations", WRITER_A).await.ok(200);
    ctx.cleanup().await;
}

/// `[auth.jwt] issuer` alone is enough: the keys' URL comes from the issuer's OpenID Connect
/// discovery document. A key the authority rotates in is used from its first token (once the
/// refetch floor has passed), the key rotated out is refused, and tokens with made-up `kid`s
/// make the hub fetch the keys at most once per floor however many there are.
#[tokio::test]
async fn keys_are_discovered_from_the_issuer_and_rotation_is_followed() {
    use std::time::{Duration, Instant};

    use crate::authority::{Discoverable, Published};
    let idp = Discoverable::serve().await;
    let ctx = TestContext::start_with(|c| c.auth.jwt = Some(idp.config(1))).await;
    let claims = idp.claims("tenant-a", "integrations:read");
    let old = token(Signer::Rs256, &claims);
    ctx.get("/api/v1/integrations", &old).await.ok(200);
    assert_eq!(idp.jwks_fetches(), 1);

    let start = Instant::now();
    for n in 0..50 {
        ctx.get(
            "/api/v1/integrations",
            &token(Signer::MadeUpKid(n), &claims),
        )
        .await
        .problem(401);
    }
    let floors = start.elapsed().as_secs() as usize + 1;
    assert!(
        idp.jwks_fetches() <= 1 + floors,
        "{} fetches for 50 made-up kids in {:?}",
        idp.jwks_fetches(),
        start.elapsed()
    );

    idp.publish(Published::Es256);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = token(Signer::Es256, &claims);
    ctx.get("/api/v1/integrations", &new).await.ok(200);
    ctx.get("/api/v1/integrations", &old).await.problem(401);
    ctx.get("/api/v1/integrations", &new).await.ok(200);
    ctx.cleanup().await;
}

/// A discovery document naming another issuer is not followed: its keys are never fetched.
#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    use crate::authority::Discoverable;
    let idp = Discoverable::serve().await;
    idp.claim_issuer("https://evil.example");
    let ctx = TestContext::start_with(|c| c.auth.jwt = Some(idp.config(1))).await;
    let jwt = token(Signer::Rs256, &idp.claims("tenant-a", "integrations:read"));
    ctx.get("/api/v1/integrations", &jwt).await.problem(503);
    assert_eq!(idp.jwks_fetches(), 0);
    // The configured API keys are unaffected.
    ctx.get("/api/v1/integrations", READER_A).await.ok(200);
    ctx.cleanup().await;
}

/// Without `jwks_url`, the issuer must be a URL the keys can be discovered from.
#[test]
fn an_issuer_that_cannot_be_discovered_is_refused_at_start() {
    let mut config = daemon::config::Config::default();
    let mut jwt = authority::config(String::new());
    jwt.jwks_url = None;
    jwt.issuer = "authority.test".into();
    config.auth.jwt = Some(jwt);
    assert!(daemon::check(&config).is_err());
    config.auth.jwt.as_mut().unwrap().issuer = authority::ISSUER.into();
    assert!(daemon::check(&config).is_ok());
}
