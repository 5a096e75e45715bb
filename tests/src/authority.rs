//! A fake OAuth authority: serves the test JWKS on loopback, and mints tokens with the test keys.

use std::net::SocketAddr;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Route, Server, get, handler};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://authority.test";
pub const AUDIENCE: &str = "stellaops-integrations";

const JWKS: &str = include_str!("../fixtures/jwks.json");
const RS256_PEM: &str = include_str!("../fixtures/jwt-rs256.pem");
const ES256_PEM: &str = include_str!("../fixtures/jwt-es256.pem");
const ROGUE_PEM: &str = include_str!("../fixtures/jwt-rogue-rs256.pem");

#[handler]
fn jwks() -> poem::web::Json<Value> {
    poem::web::Json(serde_json::from_str(JWKS).unwrap())
}

/// Serves the JWKS on a free loopback port; returns its URL.
pub async fn serve() -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(Route::new().at("/jwks", get(jwks))));
    format!("http://{addr}/jwks")
}

/// The daemon's JWT settings for this authority (serde defaults for the rest).
pub fn config(jwks_url: String) -> daemon::config::JwtConfig {
    serde_json::from_value(json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks_url": jwks_url,
        "leeway_seconds": 0,
    }))
    .unwrap()
}

/// Signing keys.
#[derive(Clone, Copy)]
pub enum Signer {
    Rs256,
    Es256,
    /// An RSA key the JWKS does not publish, claiming the published kid.
    Rogue,
}

/// Mints a token with `claims`, signed by `signer`.
pub fn token(signer: Signer, claims: &Value) -> String {
    let (alg, kid, key) = match signer {
        Signer::Rs256 => (
            Algorithm::RS256,
            "test-rs256",
            EncodingKey::from_rsa_pem(RS256_PEM.as_bytes()),
        ),
        Signer::Es256 => (
            Algorithm::ES256,
            "test-es256",
            EncodingKey::from_ec_pem(ES256_PEM.as_bytes()),
        ),
        Signer::Rogue => (
            Algorithm::RS256,
            "test-rs256",
            EncodingKey::from_rsa_pem(ROGUE_PEM.as_bytes()),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key.unwrap()).unwrap()
}

/// Standard claims for `tenant` with `scope`, valid for five minutes.
pub fn claims(tenant: &str, scope: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "tid": tenant,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}
