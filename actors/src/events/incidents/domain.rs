//! Failure domains: what an integration depends on that can fail for many integrations at
//! once, derived from its catalog row.
//!
//! - `provider`: the provider endpoint, `scheme://host:port` of the configuration's base URL
//!   (`baseUrl`, `apiBaseUrl`, `url`, `registryUrl`, `endpoint`; a GitHub App without
//!   `apiBaseUrl` talks to `https://api.github.com:443`). Host names compare case-insensitively
//!   and the scheme's default port is written out, so `https://GitLab.example.com/` and
//!   `https://gitlab.example.com:443/api` are one domain.
//! - `vault`: the secret backend, for integrations whose AuthRef names the `vault` backend; its
//!   value is the configured vault address.
//! - `egress`: the hub's own way out, shared by every integration; raised by the egress
//!   self-check, never by correlation.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

/// The kinds of failure domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainKind {
    Provider,
    Vault,
    Egress,
}

impl DomainKind {
    pub const ALL: [DomainKind; 3] = [DomainKind::Provider, DomainKind::Vault, DomainKind::Egress];

    pub const fn as_str(self) -> &'static str {
        match self {
            DomainKind::Provider => "provider",
            DomainKind::Vault => "vault",
            DomainKind::Egress => "egress",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a failure with `reason` can come from a shared outage of this kind of domain:
    /// the network, timeouts, TLS and a provider that says it is degraded for an endpoint;
    /// an unavailable credential for the secret backend. Authentication failures, bad answers
    /// and crashing connectors are each integration's own.
    pub fn compatible(self, reason: &str) -> bool {
        match self {
            DomainKind::Provider => {
                matches!(reason, "network" | "timeout" | "tls" | "provider_degraded")
            }
            DomainKind::Vault => reason == "credential_unavailable",
            DomainKind::Egress => matches!(reason, "network" | "timeout" | "tls"),
        }
    }
}

/// One failure domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain {
    pub kind: DomainKind,
    pub value: Arc<str>,
}

impl Domain {
    pub fn new(kind: DomainKind, value: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    /// The hub's egress.
    pub fn egress() -> Self {
        Self::new(DomainKind::Egress, "hub")
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.value)
    }
}

/// Configuration keys that hold a provider's base URL, in order of preference.
const URL_KEYS: [&str; 5] = ["baseUrl", "apiBaseUrl", "url", "registryUrl", "endpoint"];

/// Where a GitHub App talks to when its configuration names no `apiBaseUrl`.
const GITHUB_API: &str = "https://api.github.com";

/// `scheme://host:port` of an `http`/`https` URL, host lower-cased and the port written out;
/// `None` for anything else. Userinfo, path, query and fragment never reach the value.
pub fn endpoint(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", url.scheme()))
}

/// The provider endpoint of an integration's configuration.
pub fn provider_endpoint(provider_type: &str, config: &Map<String, Value>) -> Option<String> {
    let configured = URL_KEYS
        .iter()
        .filter_map(|k| config.get(*k).and_then(Value::as_str))
        .find_map(endpoint);
    configured.or_else(|| (provider_type == "github_app").then(|| endpoint(GITHUB_API))?)
}

/// The failure domains an integration belongs to (besides the hub's egress, which every
/// integration shares): its provider endpoint, and the vault when its AuthRef uses it and a
/// vault address is configured.
pub fn domains_of(
    provider_type: &str,
    config: &Value,
    auth_ref_uri: Option<&str>,
    vault_addr: Option<&str>,
) -> Vec<Domain> {
    let mut domains = Vec::with_capacity(2);
    if let Some(endpoint) = config
        .as_object()
        .and_then(|c| provider_endpoint(provider_type, c))
    {
        domains.push(Domain::new(DomainKind::Provider, endpoint));
    }
    let uses_vault = auth_ref_uri
        .and_then(|uri| uri.parse::<connectors::authref::AuthRef>().ok())
        .is_some_and(|r| r.backend == connectors::authref::Backend::Vault);
    if uses_vault && let Some(addr) = vault_addr.and_then(endpoint) {
        domains.push(Domain::new(DomainKind::Vault, addr));
    }
    domains
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_are_scheme_host_and_port_without_anything_else() {
        assert_eq!(
            endpoint("https://GitLab.Example.com/api/v4?x=1#f").as_deref(),
            Some("https://gitlab.example.com:443")
        );
        assert_eq!(
            endpoint("http://user:secret@10.0.0.1:8080/").as_deref(),
            Some("http://10.0.0.1:8080")
        );
        assert_eq!(endpoint("ftp://x"), None);
        assert_eq!(endpoint("not a url"), None);
    }

    #[test]
    fn integrations_belong_to_their_endpoint_and_the_vault_they_use() {
        let d = domains_of(
            "gitlab",
            &json!({"baseUrl": "https://gitlab.example.com"}),
            Some("authref://vault/secret/tenants/acme/gitlab#token"),
            Some("https://vault.internal:8200/"),
        );
        assert_eq!(
            d,
            vec![
                Domain::new(DomainKind::Provider, "https://gitlab.example.com:443"),
                Domain::new(DomainKind::Vault, "https://vault.internal:8200"),
            ]
        );
        // An env reference does not depend on the vault; a GitHub App defaults to GitHub.
        let d = domains_of(
            "github_app",
            &json!({}),
            Some("authref://env/TOKEN"),
            Some("https://v:1"),
        );
        assert_eq!(
            d,
            vec![Domain::new(
                DomainKind::Provider,
                "https://api.github.com:443"
            )]
        );
        assert!(domains_of("inmemory", &json!({"behaviour": "healthy"}), None, None).is_empty());
    }

    #[test]
    fn reasons_are_compatible_with_the_domain_that_can_cause_them() {
        assert!(DomainKind::Provider.compatible("network"));
        assert!(DomainKind::Provider.compatible("provider_degraded"));
        assert!(!DomainKind::Provider.compatible("auth_failed"));
        assert!(!DomainKind::Provider.compatible("credential_unavailable"));
        assert!(DomainKind::Vault.compatible("credential_unavailable"));
        assert!(!DomainKind::Vault.compatible("timeout"));
    }
}
