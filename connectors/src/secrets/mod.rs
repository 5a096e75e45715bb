//! Resolving AuthRef URIs to secrets, each inside the namespace of the tenant that uses it.
//!
//! # Layout
//! - [`Secret`]: the redacting holder every credential lives in (`Debug`/`Display` print
//!   `[REDACTED]`; the value is reached only through [`Secret::expose`]).
//! - [`TenantRef`]: a tenant's reference. It is the only way to resolve a secret for a
//!   tenant's use, so no code path can resolve a tenant's reference with the daemon's
//!   authority by forgetting whose it is.
//! - [`SecretResolver`] (`resolver.rs`): checks the tenant's [`namespace`], picks the backend,
//!   logs in to Vault with the tenant's own credentials when configured, and caches resolved
//!   secrets per tenant and reference (merging concurrent look-ups; a provider's 401 drops
//!   one, [`SecretResolver::invalidate`]). The operator's own references (NATS credentials,
//!   per-tenant Vault logins) resolve through [`SecretResolver::resolve_operator`], which
//!   tenants cannot reach.
//! - [`Resolved`]: a secret with its [`binding::Binding`], the hosts its owner allows it to be
//!   sent to; [`Resolved::for_url`] is the check before sending.
//! - Backends: [`vault`] (HashiCorp Vault / OpenBao KV v2 over HTTP, AppRole login), `env`,
//!   `file`.
//!
//! Every failure is a [`SecretError`] whose message names the reference and the backend's
//! status, never the secret; [`crate::Error::Credential`] turns it into the health reason
//! `credential_unavailable`.

pub mod binding;
mod env;
mod file;
pub mod namespace;
mod resolver;
pub mod vault;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::authref::AuthRef;
pub use binding::Binding;
pub use namespace::{NamespaceError, Namespaces};
pub use resolver::SecretResolver;

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

/// A tenant's AuthRef: the reference together with the tenant whose namespace it must lie in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TenantRef {
    tenant: Arc<str>,
    reference: AuthRef,
}

impl TenantRef {
    /// `reference`, used on behalf of `tenant`.
    pub fn new(tenant: impl Into<Arc<str>>, reference: AuthRef) -> Self {
        Self {
            tenant: tenant.into(),
            reference,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn reference(&self) -> &AuthRef {
        &self.reference
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reference.fmt(f)
    }
}

/// A resolved secret and where it may be sent.
#[derive(Clone, Debug)]
pub struct Resolved {
    secret: Secret,
    binding: Binding,
    /// When the secret expires, where its store tells (a lease, or Vault's
    /// `custom_metadata.expires_at`).
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Resolved {
    pub(crate) fn new(secret: Secret, binding: Binding) -> Self {
        Self {
            secret,
            binding,
            expires_at: None,
        }
    }

    pub(crate) fn with_expiry(mut self, at: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        self.expires_at = at;
        self
    }

    /// When the secret expires, where its store tells.
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.expires_at
    }

    /// The secret, for building a request. Whoever sends that request checks its URL with
    /// [`Resolved::for_url`] (or [`Resolved::check_url`]) first.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The hosts the secret's owner allows.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// Refuses `url` unless the secret's binding allows its host.
    ///
    /// # Errors
    /// [`SecretError::HostNotAllowed`].
    pub fn check_url(&self, reference: &TenantRef, url: &Url) -> Result<(), SecretError> {
        if self.binding.permits(url) {
            return Ok(());
        }
        Err(SecretError::HostNotAllowed {
            reference: reference.to_string(),
            host: url.host_str().unwrap_or("(no host)").to_owned(),
            allowed: self.binding.describe(),
        })
    }

    /// The secret, if it may be sent to `url`.
    ///
    /// # Errors
    /// [`SecretError::HostNotAllowed`].
    pub fn for_url(&self, reference: &TenantRef, url: &Url) -> Result<&Secret, SecretError> {
        self.check_url(reference, url).map(|()| &self.secret)
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
    /// The reference is outside its tenant's namespace: nothing was read.
    #[error("{reference}: {detail}")]
    OutsideNamespace { reference: String, detail: String },
    /// The secret's `allowed_hosts` does not include the destination: nothing was sent.
    #[error("{reference}: may not be sent to {host}; its allowed_hosts are {allowed}")]
    HostNotAllowed {
        reference: String,
        host: String,
        allowed: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([REDACTED])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_bound_secret_is_handed_out_only_for_its_hosts() {
        let reference = TenantRef::new("acme", "authref://env/ACME_X".parse().unwrap());
        let bound = Resolved::new(
            Secret::new("s3cr3t-value"),
            Binding::parse("gitlab.example.com").unwrap(),
        );
        let ok = Url::parse("https://gitlab.example.com/api").unwrap();
        let evil = Url::parse("https://attacker.test/").unwrap();
        assert_eq!(
            bound.for_url(&reference, &ok).unwrap().expose(),
            "s3cr3t-value"
        );
        let e = bound.for_url(&reference, &evil).unwrap_err();
        assert!(matches!(e, SecretError::HostNotAllowed { .. }), "{e}");
        assert!(e.to_string().contains("attacker.test"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let unbound = Resolved::new(Secret::new("v"), Binding::unbound());
        assert!(unbound.for_url(&reference, &evil).is_ok());
    }
}
