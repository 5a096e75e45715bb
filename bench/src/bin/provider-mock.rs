//! A loopback provider for the health benchmarks: answers the OCI Distribution ping
//! (`GET /v2/` → 200) the way a registry that needs no authentication does.
//!
//! Outage control, for `bench/outage.py`: `PUT /control/outage` takes the provider down (the
//! ping answers 503, which a connector reads as `provider_degraded`), `DELETE /control/outage`
//! brings it back, and `GET /control/outage` answers `down` or `up`.
//!
//! Usage: `provider-mock LISTEN_ADDR`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;
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
    let [_, listen] = args.as_slice() else {
        bail!("usage: provider-mock LISTEN_ADDR");
    };
    let app = Route::new().at("/v2/", get(ping)).at(
        "/control/outage",
        get(outage_state).put(outage_start).delete(outage_end),
    );
    Server::new(TcpListener::bind(listen.as_str()))
        .run(app)
        .await?;
    Ok(())
}
