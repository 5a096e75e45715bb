//! Resolving AuthRef URIs to secrets.
//!
//! # Layout
//! - [`Secret`]: the redacting holder every credential lives in (`Debug`/`Display` print
//!   `[REDACTED]`; the value is reached only through [`Secret::expose`]).
//! - [`SecretResolver`]: picks the backend, caches resolved secrets for a TTL, and forgets one
//!   when a provider refuses it ([`SecretResolver::invalidate`], called on a 401).
//! - [`vault`]: HashiCorp Vault / OpenBao KV v2 over HTTP; `env` and `file` backends are here.
//!
//! Every failure is a [`SecretError`] whose message names the reference and the backend's
//! status, never the secret; [`crate::Error::Credential`] turns it into the health reason
//! `credential_unavailable`.

pub mod vault;

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::authref::{AuthRef, Backend};
use crate::settings::SecretsSettings;

/// A resolved credential. Cloning shares the value; `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(Arc<SecretString>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(SecretString::from(value.into())))
    }

    /// The value, for the one place that must send it (a header, a signature).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Why a secret could not be resolved. Messages name the reference and status only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The backend is not configured in this deployment (no Vault address, no secrets folder).
    #[error("{backend} backend is not configured: {what}")]
    NotConfigured {
        backend: &'static str,
        what: &'static str,
    },
    /// The backend could not be reached or answered with a server error.
    #[error("{reference}: secret store unavailable ({detail})")]
    Unavailable { reference: String, detail: String },
    /// Vault is sealed (503).
    #[error("{reference}: the vault is sealed")]
    Sealed { reference: String },
    /// The backend refused our token (401/403).
    #[error("{reference}: access to the secret was denied")]
    Denied { reference: String },
    /// No secret at that path, or no such `#key` in it.
    #[error("{reference}: not found")]
    NotFound { reference: String },
    /// The backend asked to slow down (429).
    #[error("{reference}: the secret store is rate limiting")]
    RateLimited {
        reference: String,
        retry_after: Option<Duration>,
    },
    /// The stored value is not usable (several fields and no `#key`, not text, not JSON).
    #[error("{reference}: {detail}")]
    Malformed { reference: String, detail: String },
}

impl SecretError {
    /// How long the backend asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SecretError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

struct Cached {
    secret: Secret,
    fetched: Instant,
}

/// Resolves AuthRefs through their backends, with a TTL cache. Cheap to clone.
#[derive(Clone)]
pub struct SecretResolver {
    inner: Arc<ResolverInner>,
}

struct ResolverInner {
    settings: SecretsSettings,
    vault: vault::VaultClient,
    cache: Mutex<HashMap<AuthRef, Cached>>,
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
        Self::new(&SecretsSettings::default())
    }
}

impl SecretResolver {
    /// A resolver for these settings. Reads nothing yet: a missing Vault address or token is
    /// reported when a vault reference is first resolved.
    pub fn new(settings: &SecretsSettings) -> Self {
        Self {
            inner: Arc::new(ResolverInner {
                settings: settings.clone(),
                vault: vault::VaultClient::new(settings),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.inner.settings.cache_ttl_secs)
    }

    /// The secret behind `reference`, from the cache while it is fresh.
    ///
    /// # Errors
    /// A [`SecretError`] for an unconfigured, unreachable, sealed, refusing or empty backend.
    pub async fn resolve(&self, reference: &AuthRef) -> Result<Secret, SecretError> {
        if let Some(hit) = self.cached(reference) {
            return Ok(hit);
        }
        let resolved = match reference.backend {
            Backend::Vault => self.inner.vault.read(reference).await,
            Backend::Env => resolve_env(reference, |name| std::env::var(name)),
            Backend::File => {
                resolve_file(self.inner.settings.secrets_dir.as_deref(), reference).await
            }
        };
        let secret = match resolved {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(message = "Secret unavailable.", %reference, %error);
                return Err(error);
            }
        };
        tracing::debug!(message = "Secret resolved.", %reference);
        if !self.ttl().is_zero() {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(
                reference.clone(),
                Cached {
                    secret: secret.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        Ok(secret)
    }

    fn cached(&self, reference: &AuthRef) -> Option<Secret> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(reference)
            .filter(|c| c.fetched.elapsed() < self.ttl())
            .map(|c| c.secret.clone())
    }

    /// Forgets a cached secret, so the next [`resolve`](Self::resolve) reads the backend
    /// again: called when a provider answers 401 (the secret may have been rotated).
    pub fn invalidate(&self, reference: &AuthRef) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.remove(reference).is_some() {
            tracing::debug!(message = "Cached secret dropped after a refusal.", %reference);
        }
    }
}

/// Picks `#key` from a JSON object, or the only field when there is no key.
pub(crate) fn pick_field(
    reference: &AuthRef,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<Secret, SecretError> {
    let value = match &reference.key {
        Some(key) => fields.get(key).ok_or_else(|| SecretError::NotFound {
            reference: reference.to_string(),
        })?,
        None if fields.len() == 1 => fields.values().next().expect("one field"),
        None => {
            return Err(SecretError::Malformed {
                reference: reference.to_string(),
                detail: format!("the secret has {} fields; name one with #key", fields.len()),
            });
        }
    };
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Ok(Secret::new(s.clone())),
        _ => Err(SecretError::Malformed {
            reference: reference.to_string(),
            detail: "the field is empty or not a string".into(),
        }),
    }
}

/// A whole value, or its `#key` field when the value is a JSON object.
fn from_text(reference: &AuthRef, text: String) -> Result<Secret, SecretError> {
    match &reference.key {
        None => {
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(SecretError::Malformed {
                    reference: reference.to_string(),
                    detail: "the secret is empty".into(),
                });
            }
            Ok(Secret::new(trimmed))
        }
        Some(_) => {
            let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .map_err(|_| SecretError::Malformed {
                    reference: reference.to_string(),
                    detail: "#key needs a JSON object".into(),
                })?;
            pick_field(reference, &fields)
        }
    }
}

/// The `env` backend; `lookup` is `std::env::var` outside tests.
fn resolve_env(
    reference: &AuthRef,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Secret, SecretError> {
    match lookup(&reference.path) {
        Ok(value) => from_text(reference, value),
        Err(std::env::VarError::NotPresent) => Err(SecretError::NotFound {
            reference: reference.to_string(),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::Malformed {
            reference: reference.to_string(),
            detail: "not valid UTF-8".into(),
        }),
    }
}

/// The file of a `file` reference, refused if it would leave the secrets folder.
fn file_path(dir: &Path, reference: &AuthRef) -> Result<PathBuf, SecretError> {
    let relative = Path::new(&reference.path);
    // AuthRef parsing already refuses `..` and empty segments; this is the second lock.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(SecretError::NotFound {
            reference: reference.to_string(),
        });
    }
    Ok(dir.join(relative))
}

async fn resolve_file(dir: Option<&Path>, reference: &AuthRef) -> Result<Secret, SecretError> {
    let dir = dir.ok_or(SecretError::NotConfigured {
        backend: "file",
        what: "no secrets_dir",
    })?;
    let path = file_path(dir, reference)?;
    // Symlinks could point outside the folder: compare canonical paths.
    let (canonical_dir, canonical) = match (
        tokio::fs::canonicalize(dir).await,
        tokio::fs::canonicalize(&path).await,
    ) {
        (Ok(d), Ok(p)) => (d, p),
        (Err(_), _) => {
            return Err(SecretError::Unavailable {
                reference: reference.to_string(),
                detail: "the secrets folder is not readable".into(),
            });
        }
        (_, Err(_)) => {
            return Err(SecretError::NotFound {
                reference: reference.to_string(),
            });
        }
    };
    if !canonical.starts_with(&canonical_dir) {
        return Err(SecretError::NotFound {
            reference: reference.to_string(),
        });
    }
    let text =
        tokio::fs::read_to_string(&canonical)
            .await
            .map_err(|e| SecretError::Unavailable {
                reference: reference.to_string(),
                detail: format!("cannot read the file: {}", e.kind()),
            })?;
    from_text(reference, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AuthRef {
        s.parse().unwrap()
    }

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([REDACTED])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_backend_reads_the_named_variable_and_its_key() {
        let lookup = |name: &str| match name {
            "GITLAB_TOKEN" => Ok("s3cret\n".to_owned()),
            "CI_JSON" => Ok(r#"{"token":"t1","user":"u"}"#.to_owned()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let s = resolve_env(&r("authref://env/GITLAB_TOKEN"), lookup).unwrap();
        assert_eq!(s.expose(), "s3cret");
        let t = resolve_env(&r("authref://env/CI_JSON#token"), lookup).unwrap();
        assert_eq!(t.expose(), "t1");
        // without #key the whole value is the secret
        let whole = resolve_env(&r("authref://env/CI_JSON"), lookup).unwrap();
        assert!(whole.expose().starts_with('{'));
        for (reference, missing) in [
            ("authref://env/NOPE", true),
            ("authref://env/CI_JSON#nokey", true),
            ("authref://env/GITLAB_TOKEN#token", false),
        ] {
            let e = resolve_env(&r(reference), lookup).unwrap_err();
            assert_eq!(
                matches!(e, SecretError::NotFound { .. }),
                missing,
                "{reference}: {e}"
            );
            assert!(!e.to_string().contains("s3cret") && !e.to_string().contains("t1"));
        }
    }

    #[tokio::test]
    async fn the_env_backend_reads_the_process_environment() {
        // PATH is set in every environment the tests run in.
        let path = SecretResolver::default()
            .resolve(&r("authref://env/PATH"))
            .await
            .unwrap();
        assert_eq!(path.expose(), std::env::var("PATH").unwrap().trim_end());
    }

    #[tokio::test]
    async fn file_backend_stays_inside_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ci")).unwrap();
        std::fs::write(dir.path().join("ci/gitlab"), "glpat-abc\n").unwrap();
        std::fs::write(outside.path().join("shadow"), "nope").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("shadow"), dir.path().join("link")).unwrap();
        let resolver = SecretResolver::new(&SecretsSettings {
            secrets_dir: Some(dir.path().to_owned()),
            ..SecretsSettings::default()
        });
        assert_eq!(
            resolver
                .resolve(&r("authref://file/ci/gitlab"))
                .await
                .unwrap()
                .expose(),
            "glpat-abc"
        );
        for missing in ["authref://file/ci/none", "authref://file/link"] {
            let e = resolver.resolve(&r(missing)).await.unwrap_err();
            assert!(matches!(e, SecretError::NotFound { .. }), "{missing}: {e}");
        }
        let off = SecretResolver::default()
            .resolve(&r("authref://file/ci/gitlab"))
            .await
            .unwrap_err();
        assert!(matches!(off, SecretError::NotConfigured { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn cache_serves_until_ttl_or_invalidation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "one").unwrap();
        let resolver = SecretResolver::new(&SecretsSettings {
            secrets_dir: Some(dir.path().to_owned()),
            cache_ttl_secs: 60,
            ..SecretsSettings::default()
        });
        let reference = r("authref://file/tok");
        assert_eq!(resolver.resolve(&reference).await.unwrap().expose(), "one");
        std::fs::write(dir.path().join("tok"), "two").unwrap();
        assert_eq!(resolver.resolve(&reference).await.unwrap().expose(), "one");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(resolver.resolve(&reference).await.unwrap().expose(), "two");
        std::fs::write(dir.path().join("tok"), "three").unwrap();
        resolver.invalidate(&reference);
        assert_eq!(
            resolver.resolve(&reference).await.unwrap().expose(),
            "three"
        );
    }
}
