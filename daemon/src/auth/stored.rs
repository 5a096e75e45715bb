//! API keys stored in the database (the bootstrap key and those made through
//! `/api/v1/api-keys`), looked up by digest with a cache that a revocation empties at once.
//!
//! # Revocation on every replica
//! A key found in the database is cached for [`CACHE_TTL`]. Deleting a key drops it from this
//! process's cache at once ([`StoredKeys::forget`]); on PostgreSQL the deleting transaction
//! also announces the key's id on `stella_api_keys`, and every replica's listener drops it
//! from its own cache when the notification arrives (within milliseconds of the commit). The
//! cache is trusted only while that listener is connected: when it fails, the cache is
//! emptied and every request reads the database until the listener is back, so a missed
//! notification can never keep a revoked key alive. A lookup that raced a revocation (read
//! the row before the delete, cached it after the notification) is caught by a generation
//! counter that every revocation raises: a result read under an older generation is used
//! once and not cached.
//!
//! # Expiry warnings
//! Every [`EXPIRY_SCAN`] the daemon claims the keys that expire within `[events.alerts]
//! credential_warning_seconds` and were not warned about yet ([`warn_expiring`]), and appends
//! one `dev.stellaops.integration.apikey.expiring` event per key to the outbox through the
//! health engine's result writer (so the outbox stays in commit order). A key is claimed in
//! the database before its event is queued, so replicas scanning at once warn once; a crash in
//! between loses that warning rather than repeating it.
//!
//! # Last use
//! The time a key was last used is recorded off the request path: authentication notes it in
//! memory at most once a minute per key ([`LAST_USED_GRANULARITY`]), and a background task
//! writes what was noted every [`FLUSH_EVERY`], all keys in one transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use actors::Store;
use actors::store::keys::API_KEYS_CHANNEL;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseBackend;
use sea_orm::sqlx::postgres::PgListener;

use super::api_key::StoredKey;
use super::{AuthError, Principal};

/// How long a key read from the database is used without reading it again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// A key's last use is recorded at most this often.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// How often noted uses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often keys about to expire are looked for.
pub const EXPIRY_SCAN: Duration = Duration::from_secs(5);
/// Wait before reconnecting a failed listener.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// How often the background tasks look whether the daemon is gone.
const ALIVE_CHECK: Duration = Duration::from_secs(5);

struct Cached {
    id: String,
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    fetched: Instant,
}

#[derive(Default)]
struct Uses {
    /// Noted, not yet written.
    pending: HashMap<String, DateTime<Utc>>,
    /// When each key's use was last noted.
    noted: HashMap<String, Instant>,
}

/// The database's keys, as the authenticator sees them.
pub struct StoredKeys {
    store: Store,
    cache: RwLock<HashMap<[u8; 32], Cached>>,
    /// Whether cached entries may be used: always on SQLite (this process makes every change),
    /// on PostgreSQL while the revocation listener is connected.
    trusted: AtomicBool,
    /// Raised by every revocation.
    generation: AtomicU64,
    uses: Mutex<Uses>,
}

impl StoredKeys {
    /// The keys of `store`. Call [`StoredKeys::spawn`] to start recording uses (and, on
    /// PostgreSQL, listening for revocations).
    pub fn new(store: Store) -> Arc<Self> {
        let trusted = store.backend() != DatabaseBackend::Postgres;
        Arc::new(Self {
            store,
            cache: RwLock::new(HashMap::new()),
            trusted: AtomicBool::new(trusted),
            generation: AtomicU64::new(0),
            uses: Mutex::new(Uses::default()),
        })
    }

    /// Starts the background tasks; they end soon after the last `Arc` is dropped.
    pub fn spawn(self: &Arc<Self>) {
        tokio::spawn(flush_loop(Arc::downgrade(self)));
        if self.store.backend() == DatabaseBackend::Postgres {
            tokio::spawn(listen_loop(Arc::downgrade(self)));
        }
    }

    /// The principal of the stored key with this digest; `None` when no key has it.
    ///
    /// # Errors
    /// [`AuthError::Expired`] for an expired key; [`AuthError::StoreUnavailable`] when the
    /// database cannot be read.
    pub async fn authenticate(&self, digest: &[u8; 32]) -> Result<Option<Principal>, AuthError> {
        let now = Utc::now();
        if self.trusted.load(Ordering::Acquire) {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache
                .get(digest)
                .filter(|c| c.fetched.elapsed() < CACHE_TTL)
            {
                return self
                    .admit(&hit.id, &hit.principal, hit.expires_at, now)
                    .map(Some);
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let row = self
            .store
            .system()
            .api_key_by_digest(&hex::encode(digest))
            .await
            .map_err(|error| {
                tracing::error!(message = "Reading an API key failed.", %error);
                AuthError::StoreUnavailable
            })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let scopes: Vec<String> = serde_json::from_value(row.scopes).unwrap_or_default();
        let key = StoredKey::from_parts(&row.id, &row.tenant_id, &scopes, &row.key_sha256)
            .map_err(|error| {
                tracing::error!(message = "A stored API key is unusable.", key_id = %row.id, %error);
                AuthError::InvalidToken
            })?;
        let admitted = self.admit(&row.id, &key.principal, row.expires_at, now);
        if self.trusted.load(Ordering::Acquire) {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            // Under the lock, so a revocation cannot slip between the check and the insert.
            if self.generation.load(Ordering::Acquire) == generation {
                cache.insert(
                    *digest,
                    Cached {
                        id: row.id,
                        principal: key.principal,
                        expires_at: row.expires_at,
                        fetched: Instant::now(),
                    },
                );
            }
        }
        admitted.map(Some)
    }

    fn admit(
        &self,
        id: &str,
        principal: &Principal,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        if expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        self.note_use(id, now);
        Ok(principal.clone())
    }

    /// Drops the key `id` from the cache (it was revoked).
    pub fn forget(&self, id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.retain(|_, c| c.id != id);
    }

    /// Empties the cache and sets whether it may be used again.
    fn reset(&self, trusted: bool) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.clear();
        self.trusted.store(trusted, Ordering::Release);
    }

    fn note_use(&self, id: &str, now: DateTime<Utc>) {
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        if uses
            .noted
            .get(id)
            .is_some_and(|at| at.elapsed() < LAST_USED_GRANULARITY)
        {
            return;
        }
        uses.noted.insert(id.to_owned(), Instant::now());
        uses.pending.insert(id.to_owned(), now);
    }

    /// Writes the noted uses.
    pub async fn flush(&self) {
        let pending: Vec<(String, DateTime<Utc>)> = {
            let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
            uses.noted
                .retain(|_, at| at.elapsed() < LAST_USED_GRANULARITY);
            uses.pending.drain().collect()
        };
        if let Err(error) = self.store.system().api_keys_touch(&pending).await {
            // Not worth a retry queue: the next use a minute on records it again.
            tracing::warn!(message = "Recording when API keys were last used failed.", %error);
        }
    }

    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

async fn flush_loop(keys: Weak<StoredKeys>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(keys) = keys.upgrade() else { return };
        keys.flush().await;
    }
}

/// Follows `stella_api_keys` and drops revoked keys from the cache; the cache is trusted only
/// while connected.
async fn listen_loop(keys: Weak<StoredKeys>) {
    loop {
        let pool = match keys.upgrade() {
            Some(keys) => keys.store.postgres_pool().clone(),
            None => return,
        };
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(API_KEYS_CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(message = "Listening for revoked API keys failed; retrying.", %error);
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Connected: from now on no revocation is missed, so the cache may be used.
        match keys.upgrade() {
            Some(keys) => keys.reset(true),
            None => return,
        }
        loop {
            let received = tokio::select! {
                received = listener.recv() => Some(received),
                () = tokio::time::sleep(ALIVE_CHECK) => None,
            };
            let Some(keys) = keys.upgrade() else { return };
            match received {
                None => {}
                Some(Ok(notification)) => keys.forget(notification.payload()),
                Some(Err(error)) => {
                    keys.reset(false);
                    tracing::warn!(message = "Listening for revoked API keys failed; reconnecting.", %error);
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Warns, through the outbox, of each stored key that expires within `warning`, once per key,
/// until `stop` turns `true`.
pub async fn warn_expiring(
    store: Store,
    health: actors::health::HealthEngine,
    warning: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let warning = chrono::TimeDelta::from_std(warning).unwrap_or(chrono::TimeDelta::MAX);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(EXPIRY_SCAN) => {}
        }
        let now = Utc::now();
        let horizon = now
            .checked_add_signed(warning)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let claimed = match store.system().api_keys_claim_expiring(now, horizon).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(message = "Looking for API keys about to expire failed.", %error);
                continue;
            }
        };
        for key in claimed {
            let Some(expires_at) = key.expires_at else {
                continue;
            };
            health
                .record_event(expiry_event(&key, expires_at, now))
                .await;
        }
    }
}

/// The warning that `key` expires at `expires_at`.
fn expiry_event(
    key: &entity::api_key::Model,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> actors::events::NewEvent {
    actors::events::NewEvent::new(
        actors::events::EventKind::ApiKeyExpiring,
        key.tenant_id.as_str().into(),
        None,
        now,
        serde_json::json!({
            "tenant": key.tenant_id,
            "keyId": key.id,
            "name": key.name,
            "expiresAt": expires_at,
            "expiresInSeconds": (expires_at - now).num_seconds().max(0),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn keys() -> (Arc<StoredKeys>, Store) {
        let store = Store::new(actors::db::testing::database().await);
        (StoredKeys::new(store.clone()), store)
    }

    async fn insert(store: &Store, id: &str, key: &str, expires_at: Option<DateTime<Utc>>) {
        store
            .api_key_insert(entity::api_key::Model {
                id: id.into(),
                tenant_id: "t".into(),
                key_sha256: hex::encode(super::super::api_key::digest(key)),
                scopes: serde_json::json!(["integrations:read"]),
                created_at: Utc::now(),
                name: None,
                expires_at,
                last_used_at: None,
                created_by: None,
                expiry_warned_at: None,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_revoked_key_is_forgotten_and_an_expired_one_refused() {
        let (keys, store) = keys().await;
        insert(&store, "k1", "key-one", None).await;
        insert(
            &store,
            "k2",
            "key-two",
            Some(Utc::now() - chrono::TimeDelta::seconds(1)),
        )
        .await;
        let one = super::super::api_key::digest("key-one");
        let principal = keys.authenticate(&one).await.unwrap().expect("found");
        assert_eq!(principal.subject, "apikey:k1");
        assert!(
            keys.authenticate(&super::super::api_key::digest("nope"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            keys.authenticate(&super::super::api_key::digest("key-two"))
                .await,
            Err(AuthError::Expired)
        ));
        // Deleted underneath: the cache still has it until told.
        let tenant = store.tenant(actors::TenantId::new("t").unwrap());
        tenant.api_key_delete("apikey:admin", "k1").await.unwrap();
        if keys.trusted.load(Ordering::Acquire) {
            // Still served from the cache until the revocation is announced.
            assert!(keys.authenticate(&one).await.unwrap().is_some());
            let cached = keys.cached_len();
            keys.forget("k1");
            assert_eq!(keys.cached_len(), cached - 1);
        }
        assert!(keys.authenticate(&one).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn uses_are_noted_once_a_minute_and_written_by_the_flush() {
        let (keys, store) = keys().await;
        insert(&store, "k1", "key-one", None).await;
        let one = super::super::api_key::digest("key-one");
        for _ in 0..5 {
            keys.authenticate(&one).await.unwrap().unwrap();
        }
        assert_eq!(keys.uses.lock().unwrap().pending.len(), 1);
        keys.flush().await;
        assert!(keys.uses.lock().unwrap().pending.is_empty());
        keys.authenticate(&one).await.unwrap().unwrap();
        assert!(
            keys.uses.lock().unwrap().pending.is_empty(),
            "a second use within the minute is not noted"
        );
        let tenant = store.tenant(actors::TenantId::new("t").unwrap());
        let row = tenant.api_key_get("k1").await.unwrap().unwrap();
        assert!(row.last_used_at.is_some());
    }
}
