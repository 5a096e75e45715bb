//! Tenant identifiers.

use std::fmt;

/// Longest tenant identifier.
pub const MAX_LEN: usize = 64;

/// A tenant identifier: 1 to 64 characters of `[A-Za-z0-9._-]`.
///
/// The restricted alphabet keeps tenant ids safe in metric labels, NATS subjects and
/// PostgreSQL settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// A string that is not a valid tenant identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant ids are 1 to {MAX_LEN} characters of [A-Za-z0-9._-]")]
pub struct InvalidTenantId;

impl TenantId {
    /// Validates and wraps a tenant identifier.
    ///
    /// # Errors
    /// [`InvalidTenantId`] when empty, too long or outside the alphabet.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidTenantId> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_LEN
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Self(id))
        } else {
            Err(InvalidTenantId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_alphabet_and_length() {
        assert!(TenantId::new("acme-prod_1.eu").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("a'b").is_err());
        assert!(TenantId::new("a b").is_err());
        assert!(TenantId::new("x".repeat(MAX_LEN + 1)).is_err());
    }
}
