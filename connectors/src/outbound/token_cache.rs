//! Short-lived tokens a provider mints (a registry's bearer token, a cloud's access token),
//! kept until shortly before they expire so a check does not mint one every time.
//!
//! A token is only ever handed back for the exact [`TokenKey`] it was stored under: the tenant,
//! the integration, the credential it was minted with (AuthRef and user name) and its
//! audience (endpoint and scope). Two tenants never share a token, even for the same registry
//! and the same AuthRef text; neither do two integrations of one tenant, nor one integration
//! before and after its credential or URL changed.
//!
//! Time is read from tokio's clock, so tests can pause and advance it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::secrets::{Secret, TenantRef};

/// Entries kept before a sweep of the expired ones; then, if still full, the store is cleared
/// (a cache miss costs one token exchange, never a wrong answer).
pub const DEFAULT_MAX_TOKENS: usize = 250_000;
/// Longest a token is kept, whatever lifetime the provider claims.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Most taken off a token's lifetime so it is never sent in its last moments.
pub const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Who a token belongs to and what it is for. Every part must match for a lookup to hit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    tenant: Arc<str>,
    integration: Arc<str>,
    /// The AuthRef (with its tenant) the token was minted with; `None` for anonymous tokens.
    credential: Option<TenantRef>,
    /// The user name (or key id) sent with the credential.
    principal: Option<String>,
    /// The endpoint and scope: a registry URL and `registry:catalog:*`, a token URL, ….
    audience: String,
}

impl TokenKey {
    /// The key of a token for `integration` of `tenant`, minted with `credential` (and
    /// `principal`, the user name that goes with it) for `audience`.
    pub fn new(
        tenant: impl Into<Arc<str>>,
        integration: impl Into<Arc<str>>,
        credential: Option<&TenantRef>,
        principal: Option<&str>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            integration: integration.into(),
            credential: credential.cloned(),
            principal: principal.map(str::to_owned),
            audience: audience.into(),
        }
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("tenant", &self.tenant)
            .field("integration", &self.integration)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// How long to keep a token the provider says lives `lifetime`: a fifth of it is taken off,
/// at most [`MAX_EXPIRY_MARGIN`], and the whole is capped at [`MAX_TOKEN_LIFETIME`].
pub fn usable_lifetime(lifetime: Duration) -> Duration {
    let margin = (lifetime / 5).min(MAX_EXPIRY_MARGIN);
    lifetime.saturating_sub(margin).min(MAX_TOKEN_LIFETIME)
}

struct Entry {
    token: Secret,
    until: Instant,
}

/// The daemon's store of minted tokens. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    entries: Mutex<HashMap<TokenKey, Entry>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("max", &self.inner.max)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TOKENS)
    }
}

impl TokenCache {
    /// A store keeping at most about `max` tokens; with 0 it keeps none (every lookup
    /// misses, so every check mints its token anew).
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token stored under `key`, unless it is past its usable lifetime.
    pub fn get(&self, key: &TokenKey) -> Option<Secret> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some(e) if e.until > Instant::now() => Some(e.token.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `token`, which the provider says lives `lifetime`, for its
    /// [`usable_lifetime`]. A token with no usable lifetime left is not stored.
    pub fn insert(&self, key: TokenKey, token: Secret, lifetime: Duration) {
        let keep = usable_lifetime(lifetime);
        if keep.is_zero() || self.inner.max == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= self.inner.max && !entries.contains_key(&key) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.inner.max {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                token,
                until: now + keep,
            },
        );
    }

    /// Forgets the token under `key` (the provider refused it).
    pub fn remove(&self, key: &TokenKey) {
        self.entries().remove(key);
    }

    /// Tokens stored, expired ones included until they are looked up or swept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant_ref(tenant: &str, uri: &str) -> TenantRef {
        TenantRef::new(tenant, uri.parse().unwrap())
    }

    fn key(tenant: &str, integration: &str, uri: &str, audience: &str) -> TokenKey {
        let r = tenant_ref(tenant, uri);
        TokenKey::new(tenant, integration, Some(&r), Some("ci"), audience)
    }

    #[test]
    fn usable_lifetime_keeps_a_margin() {
        assert_eq!(
            usable_lifetime(Duration::from_secs(60)),
            Duration::from_secs(48)
        );
        assert_eq!(
            usable_lifetime(Duration::from_secs(300)),
            Duration::from_secs(240)
        );
        assert_eq!(
            usable_lifetime(Duration::from_secs(12 * 3600)),
            Duration::from_secs(12 * 3600 - 60)
        );
        assert_eq!(
            usable_lifetime(Duration::from_secs(30 * 24 * 3600)),
            MAX_TOKEN_LIFETIME
        );
        assert_eq!(usable_lifetime(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_kept_until_shortly_before_it_expires() {
        let cache = TokenCache::default();
        let k = key("acme", "i1", "authref://env/REG", "https://r|");
        cache.insert(k.clone(), Secret::new("t1"), Duration::from_secs(60));
        assert_eq!(cache.get(&k).unwrap().expose(), "t1");
        tokio::time::advance(Duration::from_secs(47)).await;
        assert!(cache.get(&k).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&k).is_none(), "kept past its usable lifetime");
        assert!(cache.is_empty(), "an expired token is dropped when seen");
        cache.insert(k.clone(), Secret::new("t2"), Duration::from_secs(1));
        assert_eq!(cache.get(&k).unwrap().expose(), "t2");
        cache.remove(&k);
        assert!(cache.get(&k).is_none());
        cache.insert(k.clone(), Secret::new("t3"), Duration::ZERO);
        assert!(
            cache.get(&k).is_none(),
            "a token with no lifetime is not kept"
        );
    }

    /// The attacker is another tenant (or another integration) naming the same registry and
    /// the same AuthRef text: it must mint its own token, never receive the victim's.
    #[tokio::test(start_paused = true)]
    async fn no_token_crosses_a_tenant_integration_credential_or_audience() {
        let cache = TokenCache::default();
        let victim = key("acme", "i1", "authref://vault/secret/reg#pw", "https://r|");
        cache.insert(
            victim.clone(),
            Secret::new("victim"),
            Duration::from_secs(600),
        );
        let same_ref_other_tenant = TokenKey::new(
            "mallory",
            "i1",
            Some(&tenant_ref("mallory", "authref://vault/secret/reg#pw")),
            Some("ci"),
            "https://r|",
        );
        // the reference's tenant is the integration's, so even a forged key that mixes them
        // does not match
        let mixed = TokenKey::new(
            "mallory",
            "i1",
            Some(&tenant_ref("acme", "authref://vault/secret/reg#pw")),
            Some("ci"),
            "https://r|",
        );
        for other in [
            same_ref_other_tenant,
            mixed,
            key("acme", "i2", "authref://vault/secret/reg#pw", "https://r|"),
            key(
                "acme",
                "i1",
                "authref://vault/secret/other#pw",
                "https://r|",
            ),
            key(
                "acme",
                "i1",
                "authref://vault/secret/reg#pw",
                "https://evil|",
            ),
            key(
                "acme",
                "i1",
                "authref://vault/secret/reg#pw",
                "https://r|scope",
            ),
            TokenKey::new(
                "acme",
                "i1",
                Some(&tenant_ref("acme", "authref://vault/secret/reg#pw")),
                Some("admin"),
                "https://r|",
            ),
            TokenKey::new("acme", "i1", None, None, "https://r|"),
        ] {
            assert!(
                cache.get(&other).is_none(),
                "{other:?} got the victim's token"
            );
        }
        assert_eq!(cache.get(&victim).unwrap().expose(), "victim");
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_stays_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..3 {
            cache.insert(
                key("acme", &format!("i{i}"), "authref://env/REG", "a"),
                Secret::new("t"),
                Duration::from_secs(10),
            );
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        // full of expired tokens: the sweep makes room and keeps the live one
        let live = key("acme", "live", "authref://env/REG", "a");
        cache.insert(live.clone(), Secret::new("t"), Duration::from_secs(100));
        assert_eq!(cache.len(), 1);
        for i in 0..10 {
            cache.insert(
                key("acme", &format!("j{i}"), "authref://env/REG", "a"),
                Secret::new("t"),
                Duration::from_secs(100),
            );
            assert!(cache.len() <= 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_of_size_zero_keeps_nothing() {
        let cache = TokenCache::new(0);
        let k = key("acme", "i1", "authref://env/REG", "a");
        cache.insert(k.clone(), Secret::new("t"), Duration::from_secs(600));
        assert!(cache.get(&k).is_none());
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn debug_shows_no_token() {
        let cache = TokenCache::default();
        let k = key("acme", "i1", "authref://env/REG", "a");
        cache.insert(
            k.clone(),
            Secret::new("s3cr3t-token"),
            Duration::from_secs(60),
        );
        let shown = format!("{cache:?} {k:?} {:?}", cache.get(&k));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
