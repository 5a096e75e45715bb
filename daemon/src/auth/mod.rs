//! Authentication and authorisation of API callers.
//!
//! Every `/api` route needs `Authorization: Bearer <token>`. A token is either an API key
//! (configured, or generated at first start; only its SHA-256 is ever stored) or a JWT from an
//! OAuth authority, verified against the authority's JWKS ([`jwt`]). Keys stored in the
//! database (the bootstrap key, keys made through the API) are looked up by digest, cached,
//! and dropped from the cache on every replica when revoked ([`stored`]). Either way it yields a
//! [`Principal`]: one tenant, a subject for the audit trail, and scopes. Each principal is
//! rate-limited on its own ([`rate_limit`]).

pub mod api_key;
pub mod jwt;
pub mod rate_limit;
pub mod stored;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actors::TenantId;

use crate::config::AuthConfig;

/// What a principal may do. `Write` includes `Read`; `Admin` includes both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "integrations:read",
            Scope::Write => "integrations:write",
            Scope::Admin => "integrations:admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub tenant: TenantId,
    /// Recorded as the audit actor: `apikey:<id>` or the JWT's `sub`.
    pub subject: String,
    scopes: BTreeSet<Scope>,
}

impl Principal {
    pub fn new(tenant: TenantId, subject: String, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            tenant,
            subject,
            scopes: scopes.into_iter().collect(),
        }
    }

    /// The scopes the principal holds, as granted.
    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scopes.iter().copied()
    }

    /// Whether the principal holds `scope` (or one that includes it).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|held| *held >= scope)
    }

    /// The key under which the principal is rate-limited.
    fn rate_key(&self) -> String {
        format!("{}/{}", self.tenant, self.subject)
    }
}

/// Why a request is not authenticated. Messages are safe to return: they never contain the
/// token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the bearer token is not valid")]
    InvalidToken,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an unexpected issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token names no valid tenant")]
    NoTenant,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the authority's signing keys are unavailable")]
    KeysUnavailable,
    #[error("the API keys cannot be read; retry later")]
    StoreUnavailable,
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
}

/// Turns bearer tokens into principals.
///
/// The configured keys and the JWT verifier can be replaced while the daemon runs
/// ([`Authenticator::reload`], on `SIGHUP`): they sit behind one `Arc` that a request clones
/// when it starts, so a request in flight finishes with the keys it began with.
pub struct Authenticator {
    keys: std::sync::RwLock<Arc<Keys>>,
    /// The keys stored in the database (the bootstrap key, keys made through the API); not
    /// touched by reloads. `None` only in tests of the configured keys.
    stored: Option<Arc<stored::StoredKeys>>,
    http: reqwest::Client,
    /// Not reloaded: changing the rate limit needs a restart.
    limiter: Option<rate_limit::Limiter>,
}

/// What a reload replaces.
struct Keys {
    api_keys: HashMap<[u8; 32], Principal>,
    /// The configured keys, as listed (read-only) by `GET /api/v1/api-keys`.
    configured: Vec<ConfiguredKey>,
    jwt: Option<jwt::JwtVerifier>,
}

/// A key from the configuration: listed by the API, never changed by it.
#[derive(Clone, Debug)]
pub struct ConfiguredKey {
    pub id: String,
    pub tenant: TenantId,
    pub scopes: Vec<String>,
}

impl Keys {
    fn new(config: &AuthConfig, http: &reqwest::Client) -> Result<Self, api_key::KeyConfigError> {
        let mut api_keys = HashMap::new();
        let mut configured = Vec::new();
        for c in &config.api_keys {
            let key = api_key::StoredKey::try_from(c)?;
            configured.push(ConfiguredKey {
                id: c.id.clone(),
                tenant: key.principal.tenant.clone(),
                scopes: c.scopes.clone(),
            });
            api_keys.insert(key.sha256, key.principal);
        }
        Ok(Self {
            api_keys,
            configured,
            jwt: config
                .jwt
                .clone()
                .map(|c| jwt::JwtVerifier::new(c, http.clone())),
        })
    }
}

impl Authenticator {
    /// Builds the authenticator from configuration plus the keys stored in the database.
    ///
    /// # Errors
    /// A configured key with a bad hash, tenant or scope.
    pub fn new(
        config: &AuthConfig,
        stored: Option<Arc<stored::StoredKeys>>,
        http: reqwest::Client,
    ) -> Result<Self, api_key::KeyConfigError> {
        let keys = Keys::new(config, &http)?;
        Ok(Self {
            keys: std::sync::RwLock::new(Arc::new(keys)),
            stored,
            http,
            limiter: rate_limit::Limiter::new(&config.rate_limit),
        })
    }

    /// Replaces the configured API keys and the JWT settings with those of `config` (the
    /// keys stored in the database stay; the rate limit does not change). Requests already
    /// authenticating finish with the old ones.
    ///
    /// # Errors
    /// A configured key with a bad hash, tenant or scope; then nothing changes.
    pub fn reload(&self, config: &AuthConfig) -> Result<(), api_key::KeyConfigError> {
        let keys = Arc::new(Keys::new(config, &self.http)?);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The JWT authority's issuer, when JWTs are accepted.
    pub fn jwt_issuer(&self) -> Option<String> {
        self.keys().jwt.as_ref().map(|j| j.issuer().to_owned())
    }

    /// The configured keys of `tenant` (read-only through the API).
    pub fn configured_keys(&self, tenant: &TenantId) -> Vec<ConfiguredKey> {
        self.keys()
            .configured
            .iter()
            .filter(|k| &k.tenant == tenant)
            .cloned()
            .collect()
    }

    /// The keys stored in the database.
    pub fn stored(&self) -> Option<&Arc<stored::StoredKeys>> {
        self.stored.as_ref()
    }

    /// Authenticates a bearer token and charges the caller's rate limit.
    ///
    /// # Errors
    /// An [`AuthError`] saying why, without echoing the token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let keys = self.keys();
        let principal = match (&keys.jwt, jwt::looks_like_jwt(token)) {
            (Some(verifier), true) => verifier.verify(token).await?,
            _ => {
                let digest = api_key::digest(token);
                match (keys.api_keys.get(&digest), &self.stored) {
                    (Some(principal), _) => principal.clone(),
                    (None, Some(stored)) => stored
                        .authenticate(&digest)
                        .await?
                        .ok_or(AuthError::InvalidToken)?,
                    (None, None) => return Err(AuthError::InvalidToken),
                }
            }
        };
        if let Some(limiter) = &self.limiter {
            limiter.check(&principal.rate_key())?;
        }
        Ok(principal)
    }

    /// Drops idle rate-limit state; call now and then.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// Parses scope names, ignoring those this service does not define.
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    names.into_iter().filter_map(Scope::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest() {
        let t = TenantId::new("t").unwrap();
        let writer = Principal::new(t.clone(), "w".into(), [Scope::Write]);
        assert!(writer.has(Scope::Read) && writer.has(Scope::Write) && !writer.has(Scope::Admin));
        let reader = Principal::new(t, "r".into(), [Scope::Read]);
        assert!(reader.has(Scope::Read) && !reader.has(Scope::Write));
        assert_eq!(
            parse_scopes(["integrations:admin", "other:thing"]),
            [Scope::Admin]
        );
    }
}
