//! JWTs from an OAuth authority, verified against its JWKS.
//!
//! Keys are fetched on first use and cached for `jwks_ttl_seconds`. A token signed with an
//! unknown `kid` triggers one early refetch (at most every [`REFETCH_FLOOR`]), so key rotation
//! at the authority is picked up without a restart and bogus `kid`s cannot hammer it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::TenantId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, Principal, parse_scopes};
use crate::config::JwtConfig;

/// Shortest time between two fetches of the key set.
const REFETCH_FLOOR: Duration = Duration::from_secs(10);

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
    fetched_at: Option<Instant>,
}

pub struct JwtVerifier {
    config: JwtConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    fetching: Mutex<()>,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        }
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
        let _guard = self.fetching.lock().await;
        {
            let cache = self.cache.read().await;
            let age = cache.fetched_at.map(|t| t.elapsed());
            let fresh = age.is_some_and(|a| a < ttl);
            match cache.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                None if age.is_some_and(|a| a < REFETCH_FLOOR) => {
                    return Err(AuthError::UnknownKey);
                }
                _ => {}
            }
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            Err(error) => {
                tracing::warn!(message = "Fetching the JWKS failed.", url = %self.config.jwks_url, %error);
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

    async fn fetch(
        &self,
    ) -> Result<HashMap<String, Arc<(DecodingKey, Algorithm)>>, reqwest::Error> {
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
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
