//! JWTs from an OAuth authority, verified against its JWKS.
//!
//! The JWKS URL is configured, or discovered from the issuer alone (OpenID Connect Discovery
//! 1.0: the `jwks_uri` of `<issuer>/.well-known/openid-configuration`, whose `issuer` must be
//! exactly the configured one, so a document served for another authority is refused). Keys
//! are fetched on first use and cached for `jwks_ttl_seconds`. A token signed with an unknown
//! `kid` triggers one early refetch, at most every `jwks_refetch_floor_seconds`, so key
//! rotation at the authority is picked up without a restart and made-up `kid`s cannot hammer
//! it. A failed fetch forgets the discovered URL, so the next fetch discovers it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::TenantId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, Principal, parse_scopes};
use crate::config::JwtConfig;

/// The discovery document's path under the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Why the keys could not be fetched (logged; never sent to a client).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("the discovery document's issuer is not the configured issuer")]
    IssuerMismatch,
    #[error("the discovery document's jwks_uri is not an http(s) URL usable from this issuer")]
    BadJwksUri,
}

/// The part of an OpenID provider's metadata the hub reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Whether a token has the shape of a JWS (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<(DecodingKey, Algorithm)>>,
    /// The last successful fetch: keys are fresh for `jwks_ttl_seconds` after it.
    fetched_at: Option<Instant>,
    /// The last fetch, successful or not: no other starts within the refetch floor.
    attempted_at: Option<Instant>,
}

pub struct JwtVerifier {
    config: JwtConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held by the one fetch in progress; holds the discovered JWKS URL.
    fetching: Mutex<Option<String>>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(None),
        }
    }

    /// The configured issuer, which the API document names as the OpenID Connect authority.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Verifies signature, `iss`, `aud`, `exp` and `nbf`, then reads tenant, subject and
    /// scopes from the configured claims.
    ///
    /// # Errors
    /// An [`AuthError`] naming what failed.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::InvalidToken);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.key(&kid).await?;
        if key.1 != header.alg {
            return Err(AuthError::InvalidToken);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_seconds;
        let data = decode::<Map<String, Value>>(token, &key.0, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            _ => AuthError::InvalidToken,
        })?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let tenant = self
            .config
            .tenant_claims
            .iter()
            .find_map(|c| claims.get(c).and_then(Value::as_str))
            .and_then(|t| TenantId::new(t).ok())
            .ok_or(AuthError::NoTenant)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::InvalidToken)?;
        let scopes = match claims.get(&self.config.scope_claim) {
            Some(Value::String(s)) => parse_scopes(s.split_whitespace()),
            Some(Value::Array(items)) => parse_scopes(items.iter().filter_map(Value::as_str)),
            _ => Vec::new(),
        };
        Ok(Principal::new(
            tenant,
            subject.chars().take(256).collect(),
            scopes,
        ))
    }

    async fn key(&self, kid: &str) -> Result<Arc<(DecodingKey, Algorithm)>, AuthError> {
        let ttl = Duration::from_secs(self.config.jwks_ttl_seconds);
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < ttl);
            if let (true, Some(key)) = (fresh, cache.keys.get(kid)) {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; whoever waited re-checks what the fetch brought.
        let mut discovered = self.fetching.lock().await;
        let floor = Duration::from_secs(self.config.jwks_refetch_floor_seconds);
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < ttl);
            let recently_tried = cache.attempted_at.is_some_and(|t| t.elapsed() < floor);
            match cache.keys.get(kid) {
                Some(key) if fresh || recently_tried => return Ok(key.clone()),
                None if recently_tried => return Err(AuthError::UnknownKey),
                _ => {}
            }
        }
        self.cache.write().await.attempted_at = Some(Instant::now());
        match self.fetch(&mut discovered).await {
            Ok(keys) => {
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Err(error) => {
                // Discovered again next time; the attempt counts against the floor, so a
                // down authority is not asked again for every request.
                *discovered = None;
                tracing::warn!(message = "Fetching the JWKS failed.", issuer = %self.config.issuer, %error);
                // Serve from stale keys rather than lock everybody out while the authority is down.
                let cache = self.cache.read().await;
                cache
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or(AuthError::KeysUnavailable)
            }
        }
    }

    /// The JWKS URL: configured, else discovered from the issuer (once, then kept in
    /// `discovered` until a fetch fails).
    async fn jwks_url(&self, discovered: &mut Option<String>) -> Result<String, FetchError> {
        if let Some(url) = &self.config.jwks_url {
            return Ok(url.clone());
        }
        if let Some(url) = discovered.as_ref() {
            return Ok(url.clone());
        }
        let issuer = &self.config.issuer;
        let document: Discovery = self
            .http
            .get(format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if &document.issuer != issuer {
            return Err(FetchError::IssuerMismatch);
        }
        let jwks = url::Url::parse(&document.jwks_uri).map_err(|_| FetchError::BadJwksUri)?;
        // Keys over https, unless the issuer itself is plain http (a loopback test authority).
        let https_only = issuer.starts_with("https:");
        let usable = match jwks.scheme() {
            "https" => true,
            "http" => !https_only,
            _ => false,
        };
        if !usable || jwks.host_str().is_none() {
            return Err(FetchError::BadJwksUri);
        }
        tracing::info!(message = "Discovered the authority's JWKS.", issuer = %issuer, jwks_uri = %jwks);
        *discovered = Some(document.jwks_uri.clone());
        Ok(document.jwks_uri)
    }

    async fn fetch(
        &self,
        discovered: &mut Option<String>,
    ) -> Result<HashMap<String, Arc<(DecodingKey, Algorithm)>>, FetchError> {
        let url = self.jwks_url(discovered).await?;
        let set: JwkSet = self
            .http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, Arc::new((key, alg)));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("stk_abcdef"));
        assert!(!looks_like_jwt("a..b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b.c="));
    }
}
