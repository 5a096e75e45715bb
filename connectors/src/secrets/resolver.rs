//! [`SecretResolver`]: the one place every credential passes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::binding::Binding;
use super::namespace::Namespaces;
use super::{NamespaceError, Resolved, Secret, SecretError, TenantRef, env, file, vault};
use crate::authref::{AuthRef, Backend};
use crate::settings::{SecretsSettings, VaultAuth};

/// A Vault token from an AppRole login is renewed by logging in again once this share of its
/// lease has passed.
const LOGIN_RENEW_SHARE: f64 = 0.8;
/// How long a login whose lease is not limited (0) is reused.
const UNLIMITED_LOGIN_REUSE: Duration = Duration::from_secs(3600);
/// Most entries the secret cache holds; the least recently used go first.
const CACHE_CAPACITY: u64 = 100_000;

/// On whose behalf a reference is resolved: part of the cache key, so that one tenant's
/// resolution is never served to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    /// The operator's own references (from the configuration file).
    Operator,
    Tenant(Arc<str>),
}

struct Entry {
    resolved: Resolved,
    fetched: Instant,
}

/// Resolves AuthRefs through their backends, each tenant's inside its namespace, with a TTL
/// cache. Cheap to clone.
#[derive(Clone)]
pub struct SecretResolver {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SecretsSettings,
    namespaces: Namespaces,
    vault: vault::VaultClient,
    cache: Option<moka::future::Cache<(Owner, AuthRef), Arc<Entry>>>,
    /// AppRole client tokens per tenant, with the instant they must be renewed.
    logins: tokio::sync::Mutex<HashMap<Arc<str>, (Secret, Instant)>>,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolver")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Default for SecretResolver {
    fn default() -> Self {
        Self::new(&SecretsSettings::default()).expect("the default settings are valid")
    }
}

impl SecretResolver {
    /// A resolver for these settings. Reads nothing yet: a missing Vault address or token is
    /// reported when a vault reference is first resolved.
    ///
    /// # Errors
    /// [`NamespaceError`] for tenant namespaces that could give a tenant another's space.
    pub fn new(settings: &SecretsSettings) -> Result<Self, NamespaceError> {
        let ttl = Duration::from_secs(settings.cache_ttl_secs);
        let cache = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                namespaces: Namespaces::new(settings)?,
                vault: vault::VaultClient::new(settings),
                cache,
                logins: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The tenants' namespaces.
    pub fn namespaces(&self) -> &Namespaces {
        &self.inner.namespaces
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.inner.settings.cache_ttl_secs)
    }

    /// Whether `reference` lies in its tenant's namespace; reads nothing.
    ///
    /// # Errors
    /// [`SecretError::OutsideNamespace`].
    pub fn check(&self, reference: &TenantRef) -> Result<(), SecretError> {
        self.inner
            .namespaces
            .check(reference.tenant(), reference.reference())
            .map_err(|outside| SecretError::OutsideNamespace {
                reference: reference.to_string(),
                detail: outside.to_string(),
            })
    }

    /// The secret behind a tenant's reference, and where it may be sent; from the cache while
    /// it is fresh. A reference outside the tenant's namespace is refused before any backend
    /// is asked.
    ///
    /// # Errors
    /// [`SecretError::OutsideNamespace`]; a [`SecretError`] for an unconfigured, unreachable,
    /// sealed, refusing or empty backend.
    /// How long before a secret's expiry checks warn (`credential_expiring`); zero for never.
    pub fn expiry_warning(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.inner.settings.expiry_warning_days))
    }

    pub async fn resolve(&self, reference: &TenantRef) -> Result<Resolved, SecretError> {
        let result = match self.check(reference) {
            Ok(()) => {
                let owner = Owner::Tenant(reference.tenant.clone());
                self.cached(owner, reference.reference()).await
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => tracing::debug!(
                message = "Secret resolved.",
                tenant = reference.tenant(),
                %reference,
            ),
            Err(error) => tracing::warn!(
                message = "Secret unavailable.",
                tenant = reference.tenant(),
                %reference,
                %error,
            ),
        }
        result
    }

    /// The secret behind one of the operator's own references (from the configuration file:
    /// NATS credentials, a tenant's Vault login). No namespace applies; tenants cannot name
    /// these references, since every reference they write is a [`TenantRef`].
    ///
    /// # Errors
    /// As [`SecretResolver::resolve`], without the namespace.
    pub async fn resolve_operator(&self, reference: &AuthRef) -> Result<Secret, SecretError> {
        let result = self.cached(Owner::Operator, reference).await;
        if let Err(error) = &result {
            tracing::warn!(message = "Operator secret unavailable.", %reference, %error);
        }
        result.map(|r| r.secret().clone())
    }

    async fn cached(&self, owner: Owner, reference: &AuthRef) -> Result<Resolved, SecretError> {
        let Some(cache) = &self.inner.cache else {
            return self.fetch(&owner, reference).await;
        };
        let key = (owner, reference.clone());
        for _ in 0..2 {
            let entry = cache
                .try_get_with(key.clone(), async {
                    let resolved = self.fetch(&key.0, &key.1).await?;
                    Ok::<_, SecretError>(Arc::new(Entry {
                        resolved,
                        fetched: Instant::now(),
                    }))
                })
                .await
                .map_err(|e| (*e).clone())?;
            // The cache evicts on the wall clock; freshness is judged on tokio's, so that
            // paused-clock tests and the runtime agree.
            if entry.fetched.elapsed() < self.ttl() {
                return Ok(entry.resolved.clone());
            }
            cache.invalidate(&key).await;
        }
        self.fetch(&key.0, &key.1).await
    }

    async fn fetch(&self, owner: &Owner, reference: &AuthRef) -> Result<Resolved, SecretError> {
        match reference.backend {
            Backend::Vault => {
                let token = self.vault_token(owner).await?;
                let read = self.inner.vault.read(reference, &token).await;
                if let (Err(SecretError::Denied { .. }), Owner::Tenant(tenant)) = (&read, owner) {
                    // The tenant's login may have expired early: log in again next time.
                    self.inner.logins.lock().await.remove(tenant);
                }
                read.map(|(secret, binding, expires_at)| {
                    Resolved::new(secret, binding).with_expiry(expires_at)
                })
            }
            Backend::Env => env::resolve(reference, |name| std::env::var(name))
                .map(|secret| Resolved::new(secret, Binding::unbound())),
            Backend::File => {
                let folder = match owner {
                    Owner::Operator => Vec::new(),
                    Owner::Tenant(tenant) => self.inner.namespaces.file_folder(tenant),
                };
                file::resolve(
                    self.inner.settings.secrets_dir.as_deref(),
                    &folder,
                    reference,
                )
                .await
                .map(|(secret, binding)| Resolved::new(secret, binding))
            }
        }
    }

    /// The Vault token to read `owner`'s secrets with: the tenant's own credentials when the
    /// operator configured some, the daemon's otherwise.
    async fn vault_token(&self, owner: &Owner) -> Result<Secret, SecretError> {
        let tenant = match owner {
            Owner::Operator => return self.inner.vault.daemon_token().await,
            Owner::Tenant(tenant) => tenant,
        };
        match self.inner.namespaces.vault_auth(tenant) {
            None => self.inner.vault.daemon_token().await,
            Some(VaultAuth::Token { token }) => Box::pin(self.resolve_operator(token))
                .await
                .map_err(|e| login_failed(tenant, &e)),
            Some(VaultAuth::Approle {
                mount,
                role_id,
                secret_id,
            }) => {
                let mut logins = self.inner.logins.lock().await;
                if let Some((token, renew_at)) = logins.get(tenant)
                    && Instant::now() < *renew_at
                {
                    return Ok(token.clone());
                }
                let secret_id = Box::pin(self.resolve_operator(secret_id))
                    .await
                    .map_err(|e| login_failed(tenant, &e))?;
                let label = format!("vault login of tenant {tenant}");
                let (token, lease) = self
                    .inner
                    .vault
                    .login_approle(&label, mount, role_id, &secret_id)
                    .await?;
                let reuse = if lease.is_zero() {
                    UNLIMITED_LOGIN_REUSE
                } else {
                    lease.mul_f64(LOGIN_RENEW_SHARE)
                };
                logins.insert(tenant.clone(), (token.clone(), Instant::now() + reuse));
                tracing::debug!(message = "Logged in to Vault for a tenant.", %tenant);
                Ok(token)
            }
        }
    }

    /// Forgets a cached secret, so the next [`resolve`](Self::resolve) reads the backend
    /// again: called when a provider answers 401 (the secret may have been rotated).
    pub async fn invalidate(&self, reference: &TenantRef) {
        if let Some(cache) = &self.inner.cache {
            let key = (
                Owner::Tenant(reference.tenant.clone()),
                reference.reference().clone(),
            );
            if cache.remove(&key).await.is_some() {
                tracing::debug!(message = "Cached secret dropped after a refusal.", %reference);
            }
        }
    }

    /// Forgets one of the operator's cached secrets.
    pub async fn invalidate_operator(&self, reference: &AuthRef) {
        if let Some(cache) = &self.inner.cache {
            cache.remove(&(Owner::Operator, reference.clone())).await;
        }
    }
}

fn login_failed(tenant: &str, error: &SecretError) -> SecretError {
    SecretError::Unavailable {
        reference: format!("vault login of tenant {tenant}"),
        detail: format!("the tenant's Vault credentials: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TenantSecretsSettings;

    fn r(s: &str) -> AuthRef {
        s.parse().unwrap()
    }

    fn t(tenant: &str, s: &str) -> TenantRef {
        TenantRef::new(tenant, r(s))
    }

    #[tokio::test]
    async fn the_env_backend_reads_only_mapped_variables() {
        // PATH is set in every environment the tests run in; no tenant can name it, and the
        // operator can.
        let resolver = SecretResolver::new(&SecretsSettings {
            tenants: [(
                "acme".to_owned(),
                TenantSecretsSettings {
                    env: vec!["CARGO_PKG_NAM*".into()],
                    ..Default::default()
                },
            )]
            .into(),
            ..SecretsSettings::default()
        });
        // CARGO_ is reserved: the pattern is refused at start-up.
        assert!(resolver.is_err());
        let resolver = SecretResolver::default();
        let e = resolver
            .resolve(&t("acme", "authref://env/PATH"))
            .await
            .unwrap_err();
        assert!(matches!(e, SecretError::OutsideNamespace { .. }), "{e}");
        let path = resolver
            .resolve_operator(&r("authref://env/PATH"))
            .await
            .unwrap();
        assert_eq!(path.expose(), std::env::var("PATH").unwrap().trim_end());
    }

    #[tokio::test]
    async fn a_reference_outside_the_namespace_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants/beta")).unwrap();
        std::fs::write(dir.path().join("tenants/beta/tok"), "beta-secret").unwrap();
        std::fs::write(dir.path().join("root-tok"), "operator-secret").unwrap();
        let resolver = SecretResolver::new(&SecretsSettings {
            secrets_dir: Some(dir.path().to_owned()),
            ..SecretsSettings::default()
        })
        .unwrap();
        for reference in ["authref://file/tenants/beta/tok", "authref://file/root-tok"] {
            let e = resolver.resolve(&t("acme", reference)).await.unwrap_err();
            assert!(matches!(e, SecretError::OutsideNamespace { .. }), "{e}");
            assert!(!e.to_string().contains("secret\""), "{e}");
        }
        let own = resolver
            .resolve(&t("beta", "authref://file/tenants/beta/tok"))
            .await
            .unwrap();
        assert_eq!(own.secret().expose(), "beta-secret");
        let operator = resolver
            .resolve_operator(&r("authref://file/root-tok"))
            .await
            .unwrap();
        assert_eq!(operator.expose(), "operator-secret");
    }

    #[tokio::test(start_paused = true)]
    async fn cache_serves_until_ttl_or_invalidation_and_is_keyed_by_tenant() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants/acme")).unwrap();
        std::fs::write(dir.path().join("tenants/acme/tok"), "one").unwrap();
        let resolver = SecretResolver::new(&SecretsSettings {
            secrets_dir: Some(dir.path().to_owned()),
            cache_ttl_secs: 60,
            ..SecretsSettings::default()
        })
        .unwrap();
        let reference = t("acme", "authref://file/tenants/acme/tok");
        let read = |r: TenantRef| {
            let resolver = resolver.clone();
            async move {
                resolver
                    .resolve(&r)
                    .await
                    .unwrap()
                    .secret()
                    .expose()
                    .to_owned()
            }
        };
        assert_eq!(read(reference.clone()).await, "one");
        std::fs::write(dir.path().join("tenants/acme/tok"), "two").unwrap();
        assert_eq!(read(reference.clone()).await, "one");
        // Another tenant naming the same path is refused, cache or not.
        let e = resolver
            .resolve(&t("beta", "authref://file/tenants/acme/tok"))
            .await
            .unwrap_err();
        assert!(matches!(e, SecretError::OutsideNamespace { .. }), "{e}");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(read(reference.clone()).await, "two");
        std::fs::write(dir.path().join("tenants/acme/tok"), "three").unwrap();
        resolver.invalidate(&reference).await;
        assert_eq!(read(reference.clone()).await, "three");
    }

    #[tokio::test]
    async fn concurrent_look_ups_of_one_secret_read_the_backend_once() {
        use wiremock::matchers::method;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        crate::outbound::ensure_crypto_provider();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"data": {"data": {"token": "t"}}}))
                    .set_delay(Duration::from_millis(200)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s.daemon").unwrap();
        let resolver = SecretResolver::new(&SecretsSettings {
            vault_addr: Some(server.uri()),
            vault_token_file: Some(dir.path().join("token")),
            ..SecretsSettings::default()
        })
        .unwrap();
        let reference = t("acme", "authref://vault/secret/tenants/acme/app#token");
        let lookups = (0..16).map(|_| {
            let resolver = resolver.clone();
            let reference = reference.clone();
            tokio::spawn(async move { resolver.resolve(&reference).await.map(|_| ()) })
        });
        for lookup in lookups {
            lookup.await.unwrap().unwrap();
        }
        server.verify().await;
    }
}
