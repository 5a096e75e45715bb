//! A loopback provider for the health benchmark: answers the OCI Distribution ping
//! (`GET /v2/` → 200) the way a registry that needs no authentication does.
//!
//! Usage: `provider-mock LISTEN_ADDR`.

use anyhow::bail;
use poem::{Response, Route, Server, get, handler, listener::TcpListener};

#[handler]
fn ping() -> Response {
    Response::builder()
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .content_type("application/json")
        .body("{}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen] = args.as_slice() else {
        bail!("usage: provider-mock LISTEN_ADDR");
    };
    let app = Route::new().at("/v2/", get(ping));
    Server::new(TcpListener::bind(listen.as_str()))
        .run(app)
        .await?;
    Ok(())
}
