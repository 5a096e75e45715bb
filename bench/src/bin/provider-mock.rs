//! A loopback provider for the health benchmarks: answers the OCI Distribution ping
//! (`GET /v2/` → 200) the way a registry that needs no authentication does.
//!
//! Outage control, for `bench/outage.py`: `PUT /control/outage` takes the provider down (the
//! ping answers 503, which a connector reads as `provider_degraded`), `DELETE /control/outage`
//! brings it back, and `GET /control/outage` answers `down` or `up`.
//!
//! With `--token-auth EXPIRES_IN` it is a token-auth registry instead (as Docker Hub, GHCR or
//! Harbor are): see [`token_auth`].
//!
//! Usage: `provider-mock LISTEN_ADDR [--token-auth EXPIRES_IN]`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use poem::http::StatusCode;
use poem::{Response, Route, Server, get, handler, listener::TcpListener};

/// Whether the provider is down.
static OUTAGE: AtomicBool = AtomicBool::new(false);

#[handler]
fn ping() -> Response {
    if OUTAGE.load(Ordering::Relaxed) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body("outage");
    }
    Response::builder()
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .content_type("application/json")
        .body("{}")
}

#[handler]
fn outage_state() -> &'static str {
    if OUTAGE.load(Ordering::Relaxed) {
        "down"
    } else {
        "up"
    }
}

#[handler]
fn outage_start() -> StatusCode {
    OUTAGE.store(true, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

#[handler]
fn outage_end() -> StatusCode {
    OUTAGE.store(false, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, token_auth) = match args.as_slice() {
        [_, listen] => (listen, None),
        [_, listen, flag, expires_in] if flag == "--token-auth" => (
            listen,
            Some(expires_in.parse::<u64>().context("EXPIRES_IN")?),
        ),
        _ => bail!("usage: provider-mock LISTEN_ADDR [--token-auth EXPIRES_IN]"),
    };
    let app = match token_auth {
        Some(expires_in) => token_auth::routes(listen, expires_in),
        None => Route::new().at("/v2/", get(ping)).at(
            "/control/outage",
            get(outage_state).put(outage_start).delete(outage_end),
        ),
    };
    Server::new(TcpListener::bind(listen.as_str()))
        .run(app)
        .await?;
    Ok(())
}

/// A token-auth registry, following the Docker token specification:
/// - `GET /v2/` without a valid bearer token answers 401 with
///   `WWW-Authenticate: Bearer realm="http://LISTEN_ADDR/token",service="provider-mock",scope=…`;
/// - `GET /token?service=provider-mock&scope=…` answers `{"token", "expires_in", "issued_at"}`
///   (anonymously, as a public registry's pull token is minted);
/// - `GET /v2/` with `Authorization: Bearer <token>` answers 200 while the token is unexpired.
///
/// Tokens are `<secret of this process>.<expiry in Unix seconds>`, so they are checked without
/// keeping any state per token. `GET /_stats` tells how many requests of each kind came in, for
/// the benchmark's requests per check.
mod token_auth {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::{SystemTime, UNIX_EPOCH};

    use poem::http::StatusCode;
    use poem::web::{Data, Json, Query};
    use poem::{EndpointExt, Request, Response, Route, get, handler};
    use serde::Deserialize;

    const SERVICE: &str = "provider-mock";
    const SCOPE: &str = "repository:bench/probe:pull";

    pub struct State {
        realm: String,
        secret: String,
        expires_in: u64,
        /// `/v2/` requests with a token that was accepted.
        pings_ok: AtomicU64,
        /// `/v2/` requests answered 401 (no token, an unknown or an expired one).
        pings_challenged: AtomicU64,
        /// Tokens minted.
        tokens: AtomicU64,
    }

    pub fn routes(listen: &str, expires_in: u64) -> poem::Route {
        let state = Arc::new(State {
            realm: format!("http://{listen}/token"),
            secret: format!("{:032x}", rand::random::<u128>()),
            expires_in,
            pings_ok: AtomicU64::new(0),
            pings_challenged: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
        });
        Route::new()
            .at("/v2/", get(ping.data(state.clone())))
            .at("/token", get(token_endpoint.data(state.clone())))
            .at("/_stats", get(stats.data(state)))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn valid(state: &State, req: &Request) -> bool {
        let Some(token) = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        let Some((secret, expiry)) = token.split_once('.') else {
            return false;
        };
        secret == state.secret && expiry.parse::<u64>().is_ok_and(|e| e > now())
    }

    #[handler]
    fn ping(req: &Request, state: Data<&Arc<State>>) -> Response {
        if valid(&state, req) {
            state.pings_ok.fetch_add(1, Relaxed);
            return Response::builder()
                .header("Docker-Distribution-API-Version", "registry/2.0")
                .content_type("application/json")
                .body("{}");
        }
        state.pings_challenged.fetch_add(1, Relaxed);
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .header(
                "WWW-Authenticate",
                format!(
                    "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"{SCOPE}\"",
                    state.realm
                ),
            )
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
    }

    #[derive(Deserialize)]
    struct TokenQuery {
        service: Option<String>,
    }

    #[handler]
    fn token_endpoint(Query(q): Query<TokenQuery>, state: Data<&Arc<State>>) -> Response {
        if q.service.as_deref() != Some(SERVICE) {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body("unknown service");
        }
        state.tokens.fetch_add(1, Relaxed);
        let issued = now();
        let body = serde_json::json!({
            "token": format!("{}.{}", state.secret, issued + state.expires_in),
            "expires_in": state.expires_in,
            "issued_at": chrono::DateTime::from_timestamp(issued as i64, 0)
                .map(|t| t.to_rfc3339()),
        });
        Response::builder()
            .content_type("application/json")
            .body(body.to_string())
    }

    #[handler]
    fn stats(state: Data<&Arc<State>>) -> Json<serde_json::Value> {
        Json(serde_json::json!({
            "pings_ok": state.pings_ok.load(Relaxed),
            "pings_challenged": state.pings_challenged.load(Relaxed),
            "tokens": state.tokens.load(Relaxed),
        }))
    }
}
