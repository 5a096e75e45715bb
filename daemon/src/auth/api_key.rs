//! API keys: random tokens of which only the SHA-256 is stored.
//!
//! A key carries 256 bits of randomness, so a plain SHA-256 (not a slow password hash) is
//! enough: the digest cannot be brute-forced back into a key.

use actors::TenantId;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Principal, Scope, parse_scopes};
use crate::config::ApiKeyConfig;

/// Prefix of generated keys, so that secret scanners can recognise them.
pub const KEY_PREFIX: &str = "stk_";

/// A key as the authenticator keeps it.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub sha256: [u8; 32],
    pub principal: Principal,
}

/// A configured key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error("api key {id}: sha256 must be 64 hex characters")]
    Hash { id: String },
    #[error("api key {id}: invalid tenant")]
    Tenant { id: String },
    #[error("api key {id}: unknown scope {scope:?}")]
    Scope { id: String, scope: String },
}

/// The SHA-256 of a presented token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random key.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl StoredKey {
    /// A key from its parts, as read from the database.
    ///
    /// # Errors
    /// A bad hash, tenant or scope.
    pub fn from_parts(
        id: &str,
        tenant: &str,
        scopes: &[String],
        sha256_hex: &str,
    ) -> Result<Self, KeyConfigError> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(sha256_hex, &mut sha256)
            .map_err(|_| KeyConfigError::Hash { id: id.into() })?;
        let tenant = TenantId::new(tenant).map_err(|_| KeyConfigError::Tenant { id: id.into() })?;
        let mut parsed = Vec::new();
        for scope in scopes {
            match parse_scopes([scope.as_str()]).first() {
                Some(s) => parsed.push(*s),
                None => {
                    return Err(KeyConfigError::Scope {
                        id: id.into(),
                        scope: scope.clone(),
                    });
                }
            }
        }
        Ok(Self {
            sha256,
            principal: Principal::new(tenant, format!("apikey:{id}"), parsed),
        })
    }
}

impl TryFrom<&ApiKeyConfig> for StoredKey {
    type Error = KeyConfigError;

    fn try_from(c: &ApiKeyConfig) -> Result<Self, Self::Error> {
        Self::from_parts(&c.id, &c.tenant, &c.scopes, &c.sha256)
    }
}

/// Every scope, for the generated administrator key.
pub fn all_scopes() -> Vec<String> {
    [Scope::Read, Scope::Write, Scope::Admin]
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_random_and_verifiable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() > 40);
        let key = StoredKey::from_parts("k", "t", &all_scopes(), &hex::encode(digest(&a))).unwrap();
        assert_eq!(key.sha256, digest(&a));
        assert!(key.principal.has(Scope::Admin));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let h = hex::encode(digest("x"));
        assert!(StoredKey::from_parts("k", "t", &[], "zz").is_err());
        assert!(StoredKey::from_parts("k", "bad tenant", &[], &h).is_err());
        assert!(StoredKey::from_parts("k", "t", &["root".into()], &h).is_err());
    }
}
