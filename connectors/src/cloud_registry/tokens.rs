//! [`TokenCache`]: tokens the cloud registries mint (an ECR authorization token, a Google or
//! Azure access token, a GHCR registry token), kept until shortly before they expire.
//!
//! One cache serves the whole daemon (it lives in [`crate::ConnectorEnv`]), so a token minted
//! by a scheduled check is reused by the next check and by an API listing, whose connectors
//! are built apart. Every entry is keyed by [`TokenKey`]: the tenant, the integration, a
//! fingerprint of what the token was minted from (provider type, configuration and AuthRef,
//! never the secret) and what the token is for. Two tenants never share an entry, even for
//! the same integration id and configuration; a changed configuration or AuthRef misses.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::connector::IntegrationSpec;
use crate::secrets::Secret;

/// Most tokens held; beyond it the least recently used go first.
const CAPACITY: u64 = 200_000;
/// A token is replaced this long before it expires (or a fifth of its lifetime before, when
/// that is shorter), so no request carries one that lapses on its way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Longest a token is kept, whatever its expiry says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What a cached token belongs to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    tenant: Arc<str>,
    integration: Arc<str>,
    /// SHA-256 of the provider type, the configuration and the AuthRef.
    fingerprint: [u8; 32],
    /// What the token is for (`authorization`, `aad`, `scope:registry:catalog:*`, …).
    purpose: String,
}

impl TokenKey {
    /// The key of `spec`'s token for `purpose`.
    pub fn new(spec: &IntegrationSpec, purpose: impl Into<String>) -> Self {
        let mut hash = Sha256::new();
        for part in [
            spec.provider_type.as_str(),
            &serde_json::Value::Object(spec.config.clone()).to_string(),
            &spec
                .auth_ref
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Self {
            tenant: Arc::from(spec.tenant.as_str()),
            integration: Arc::from(spec.id.as_str()),
            fingerprint: hash.finalize().into(),
            purpose: purpose.into(),
        }
    }

    /// The same integration's key for another purpose.
    #[must_use]
    pub fn with_purpose(&self, purpose: impl Into<String>) -> Self {
        Self {
            purpose: purpose.into(),
            ..self.clone()
        }
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("tenant", &self.tenant)
            .field("integration", &self.integration)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// A minted token and when it stops being handed out.
#[derive(Clone, Debug)]
pub struct Minted {
    pub token: Secret,
    /// [`REFRESH_MARGIN`] (or a fifth of the lifetime) before the provider's expiry, at most
    /// [`MAX_LIFETIME`] from minting.
    pub refresh_at: DateTime<Utc>,
}

impl Minted {
    /// A token minted at `now` that the provider says expires at `expires_at`.
    pub fn new(token: Secret, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Self {
        let margin = chrono::Duration::from_std(REFRESH_MARGIN)
            .unwrap_or_default()
            .min((expires_at - now) / 5);
        let longest = chrono::Duration::from_std(MAX_LIFETIME).unwrap_or_default();
        Self {
            token,
            refresh_at: (expires_at - margin).min(now + longest),
        }
    }

    /// A token minted at `now` that the provider says lasts `expires_in`.
    pub fn lasting(token: Secret, now: DateTime<Utc>, expires_in: Duration) -> Self {
        let lasting = chrono::Duration::from_std(expires_in.min(MAX_LIFETIME)).unwrap_or_default();
        Self::new(token, now, now + lasting)
    }

    /// Whether it may still be handed out at `now`.
    pub fn fresh_at(&self, now: DateTime<Utc>) -> bool {
        now < self.refresh_at
    }
}

struct UntilRefresh;

impl moka::Expiry<TokenKey, Arc<Minted>> for UntilRefresh {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Minted>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            (value.refresh_at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// The daemon's minted registry tokens. Cheap to clone; `Debug` shows no token.
#[derive(Clone)]
pub struct TokenCache {
    inner: moka::future::Cache<TokenKey, Arc<Minted>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            inner: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(UntilRefresh)
                .build(),
        }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl TokenCache {
    /// The token under `key` while it is fresh, else the one `mint` makes (kept when it is
    /// fresh itself: a token already past its refresh time is used once and not kept).
    ///
    /// # Errors
    /// `mint`'s error.
    pub async fn get_or_mint<F, Fut, E>(&self, key: &TokenKey, mint: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Minted, E>>,
    {
        if let Some(hit) = self.inner.get(key).await
            && hit.fresh_at(Utc::now())
        {
            return Ok(hit.token.clone());
        }
        let minted = mint().await?;
        let token = minted.token.clone();
        if minted.fresh_at(Utc::now()) {
            self.inner.insert(key.clone(), Arc::new(minted)).await;
        } else {
            self.inner.invalidate(key).await;
        }
        Ok(token)
    }

    /// Forgets the token under `key` (the provider refused it).
    pub async fn invalidate(&self, key: &TokenKey) {
        self.inner.invalidate(key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(tenant: &str, id: &str, config: serde_json::Value) -> IntegrationSpec {
        IntegrationSpec {
            id: id.into(),
            tenant: tenant.into(),
            provider_type: "ecr".into(),
            config: config.as_object().unwrap().clone(),
            auth_ref: Some("authref://vault/secret/aws".parse().unwrap()),
        }
    }

    fn minted(value: &str, lasting: Duration) -> Minted {
        Minted::lasting(Secret::new(value), Utc::now(), lasting)
    }

    #[test]
    fn refresh_comes_before_expiry_and_within_the_longest_lifetime() {
        let now = Utc::now();
        let m = Minted::new(Secret::new("t"), now, now + chrono::Duration::hours(1));
        assert_eq!(m.refresh_at, now + chrono::Duration::minutes(55));
        assert!(m.fresh_at(now + chrono::Duration::minutes(54)));
        assert!(!m.fresh_at(now + chrono::Duration::minutes(55)));
        let far = Minted::new(Secret::new("t"), now, now + chrono::Duration::days(30));
        assert_eq!(far.refresh_at, now + chrono::Duration::hours(12));
        // A short-lived token (a registry token's default minute) is kept four fifths of it.
        let short = Minted::lasting(Secret::new("t"), now, Duration::from_secs(60));
        assert_eq!(short.refresh_at, now + chrono::Duration::seconds(48));
        // One already expired (as moto's fixed 2015 expiry) is not fresh either.
        let past = Minted::new(Secret::new("t"), now, now - chrono::Duration::days(1));
        assert!(!past.fresh_at(now));
    }

    #[tokio::test]
    async fn a_fresh_token_is_minted_once() {
        let cache = TokenCache::default();
        let key = TokenKey::new(&spec("a", "i", json!({"region": "eu-west-1"})), "auth");
        let mut mints = 0;
        for _ in 0..3 {
            let t: Result<_, ()> = cache
                .get_or_mint(&key, || {
                    mints += 1;
                    async { Ok(minted("tok", Duration::from_secs(3600))) }
                })
                .await;
            assert_eq!(t.unwrap().expose(), "tok");
        }
        assert_eq!(mints, 1);
        cache.invalidate(&key).await;
        let _: Result<_, ()> = cache
            .get_or_mint(&key, || {
                mints += 1;
                async { Ok(minted("tok2", Duration::from_secs(3600))) }
            })
            .await;
        assert_eq!(mints, 2);
    }

    #[tokio::test]
    async fn a_token_past_its_refresh_time_is_not_kept() {
        let cache = TokenCache::default();
        let key = TokenKey::new(&spec("a", "i", json!({})), "auth");
        let mut mints = 0;
        for _ in 0..2 {
            let _: Result<_, ()> = cache
                .get_or_mint(&key, || {
                    mints += 1;
                    async {
                        let now = Utc::now();
                        Ok(Minted::new(
                            Secret::new("past"),
                            now,
                            now - chrono::Duration::seconds(1),
                        ))
                    }
                })
                .await;
        }
        assert_eq!(mints, 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = TokenCache::default();
        let key = TokenKey::new(&spec("a", "i", json!({})), "auth");
        let failed: Result<Secret, &str> =
            cache.get_or_mint(&key, || async { Err("refused") }).await;
        assert!(failed.is_err());
        let ok: Result<Secret, &str> = cache
            .get_or_mint(&key, || async {
                Ok(minted("t", Duration::from_secs(3600)))
            })
            .await;
        assert_eq!(ok.unwrap().expose(), "t");
    }

    /// The attacker's side: another tenant with the same integration id, configuration and
    /// AuthRef text must never be handed the first tenant's token.
    #[tokio::test]
    async fn tenants_never_share_a_token() {
        let cache = TokenCache::default();
        let config = json!({"region": "eu-west-1"});
        let victim = TokenKey::new(&spec("victim", "same-id", config.clone()), "auth");
        let attacker = TokenKey::new(&spec("attacker", "same-id", config), "auth");
        assert_ne!(victim, attacker);
        let _: Result<_, ()> = cache
            .get_or_mint(&victim, || async {
                Ok(minted("victim-token", Duration::from_secs(3600)))
            })
            .await;
        let got: Result<_, ()> = cache
            .get_or_mint(&attacker, || async {
                Ok(minted("attacker-token", Duration::from_secs(3600)))
            })
            .await;
        assert_eq!(got.unwrap().expose(), "attacker-token");
    }

    #[test]
    fn a_changed_configuration_or_authref_is_another_key() {
        let base = spec("a", "i", json!({"region": "eu-west-1"}));
        let key = TokenKey::new(&base, "auth");
        let mut moved = base.clone();
        moved.config = json!({"region": "us-east-1"}).as_object().unwrap().clone();
        assert_ne!(key, TokenKey::new(&moved, "auth"));
        let mut rotated = base.clone();
        rotated.auth_ref = Some("authref://vault/secret/aws2".parse().unwrap());
        assert_ne!(key, TokenKey::new(&rotated, "auth"));
        assert_ne!(key, key.with_purpose("other"));
        assert!(!format!("{key:?}").contains("aws"));
    }
}
