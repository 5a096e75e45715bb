//! A fake OAuth authority: serves the test JWKS on loopback, and mints tokens with the test keys.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, get, handler};
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

/// Which keys a [`Discoverable`] authority publishes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The RS256 key only.
    Rs256,
    /// Rotated: the ES256 key only.
    Es256,
}

/// An authority that publishes OpenID Connect discovery metadata, counts the fetches of its
/// JWKS, and rotates its keys on demand.
pub struct Discoverable {
    /// The issuer: `http://127.0.0.1:<port>`.
    pub issuer: String,
    state: Arc<DiscoverableState>,
}

struct DiscoverableState {
    issuer: Mutex<String>,
    /// The issuer the discovery document claims (a wrong one to test the check).
    claimed_issuer: Mutex<Option<String>>,
    published: Mutex<Published>,
    jwks_fetches: AtomicUsize,
}

#[handler]
fn discovery(state: Data<&Arc<DiscoverableState>>) -> poem::web::Json<Value> {
    let issuer = state.issuer.lock().unwrap().clone();
    let claimed = state.claimed_issuer.lock().unwrap().clone();
    poem::web::Json(json!({
        "issuer": claimed.unwrap_or_else(|| issuer.clone()),
        "jwks_uri": format!("{issuer}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

#[handler]
fn published_keys(state: Data<&Arc<DiscoverableState>>) -> poem::web::Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let all: Value = serde_json::from_str(JWKS).unwrap();
    let kid = match *state.published.lock().unwrap() {
        Published::Rs256 => "test-rs256",
        Published::Es256 => "test-es256",
    };
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == kid)
        .cloned()
        .collect();
    poem::web::Json(json!({ "keys": keys }))
}

impl Discoverable {
    /// Serves discovery and the RS256 key on a free loopback port.
    pub async fn serve() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(DiscoverableState {
            issuer: Mutex::new(issuer.clone()),
            claimed_issuer: Mutex::new(None),
            published: Mutex::new(Published::Rs256),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = Route::new()
            .at("/.well-known/openid-configuration", get(discovery))
            .at("/keys", get(published_keys))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { issuer, state }
    }

    /// Publishes `keys` from now on.
    pub fn publish(&self, keys: Published) {
        *self.state.published.lock().unwrap() = keys;
    }

    /// Makes the discovery document claim another issuer.
    pub fn claim_issuer(&self, issuer: &str) {
        *self.state.claimed_issuer.lock().unwrap() = Some(issuer.into());
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The daemon's settings: the issuer alone (no `jwks_url`), with a short refetch floor.
    pub fn config(&self, refetch_floor_seconds: u64) -> daemon::config::JwtConfig {
        serde_json::from_value(json!({
            "issuer": self.issuer,
            "audiences": [AUDIENCE],
            "leeway_seconds": 0,
            "jwks_refetch_floor_seconds": refetch_floor_seconds,
        }))
        .unwrap()
    }

    /// Standard claims from this issuer.
    pub fn claims(&self, tenant: &str, scope: &str) -> Value {
        let mut c = claims(tenant, scope);
        c["iss"] = json!(self.issuer);
        c
    }
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
    /// The RS256 key with a made-up kid.
    MadeUpKid(u32),
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
        Signer::MadeUpKid(_) => (
            Algorithm::RS256,
            "",
            EncodingKey::from_rsa_pem(RS256_PEM.as_bytes()),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(match signer {
        Signer::MadeUpKid(n) => format!("made-up-{n}"),
        _ => kid.into(),
    });
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
