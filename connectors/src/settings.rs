//! The deployment's settings for every connector: outbound HTTP discipline and where secrets
//! are resolved. The daemon embeds [`Settings`] in its configuration under `[connectors]` and
//! builds one [`crate::ConnectorEnv`] from it at start-up.
//!
//! No secret lives here: the Vault token comes from the `VAULT_TOKEN` environment variable or
//! from the file named by [`SecretsSettings::vault_token_file`], so logging the settings is
//! safe.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::authref::AuthRef;

/// Environment variable with the Vault/OpenBao address, used when
/// [`SecretsSettings::vault_addr`] is unset.
pub const ENV_VAULT_ADDR: &str = "VAULT_ADDR";
/// Environment variable with the Vault/OpenBao token; it takes precedence over the token file.
pub const ENV_VAULT_TOKEN: &str = "VAULT_TOKEN";
/// Environment variable with the Vault Enterprise namespace, used when
/// [`SecretsSettings::vault_namespace`] is unset.
pub const ENV_VAULT_NAMESPACE: &str = "VAULT_NAMESPACE";

/// Settings shared by every connector of the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Settings {
    /// Outbound HTTP to providers: timeouts, rate limits, the SSRF guard.
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// Where AuthRef credentials are resolved, and how long they are cached.
    #[serde(default)]
    pub secrets: SecretsSettings,
}

/// Outbound HTTP discipline for calls to providers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct OutboundSettings {
    /// Whole-request timeout, in milliseconds. The health engine wraps each check in its own
    /// timeout too; this one bounds every single request, listings included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// TCP and TLS connect timeout, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Requests per second allowed to one provider host (all integrations together), so a
    /// burst of checks cannot get the daemon's address banned.
    #[serde(default = "default_per_host_rps")]
    pub per_host_requests_per_second: u32,
    /// Requests allowed at once to one host before the per-second rate applies.
    #[serde(default = "default_per_host_burst")]
    pub per_host_burst: u32,
    /// Longest wait, in milliseconds, for the per-host limiter before a call is reported as
    /// rate limited instead of queued.
    #[serde(default = "default_rate_wait_ms")]
    pub max_rate_wait_ms: u64,
    /// Largest provider response read, in bytes; larger bodies are a `bad_response`.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Networks (CIDR, such as `10.0.0.0/8` or `127.0.0.1/32`) that providers may resolve to
    /// although they are loopback, link-local or private. Empty by default: the SSRF guard
    /// refuses every such target. Cloud metadata addresses stay refused unless listed here.
    #[serde(default)]
    pub allow_private_networks: Vec<String>,
    /// A check turns `degraded` (`quota_low`) when a provider's quota headers say less than
    /// this percentage of its limit is left (0 turns the warning off). The monitor also
    /// slows that integration's schedule until the quota resets.
    #[serde(default = "default_quota_warning_percent")]
    pub quota_warning_percent: u8,
    /// A check turns `degraded` (`certificate_expiring`) when the provider endpoint's TLS
    /// certificate expires within this many days (0 turns the warning off; an expired
    /// certificate always fails the handshake, `tls`).
    #[serde(default = "default_certificate_warning_days")]
    pub certificate_warning_days: u32,
    /// PEM files of certificate authorities trusted for providers besides the system's (a
    /// self-hosted GitLab or Harbor behind a private CA).
    #[serde(default)]
    pub ca_certificates: Vec<std::path::PathBuf>,
    /// Most short-lived provider tokens (registry bearer tokens) kept for reuse until shortly
    /// before they expire, one per integration and purpose; about 200 bytes each. 0 keeps
    /// none: every check then mints its token anew (three requests instead of one on a
    /// token-auth registry).
    #[serde(default = "default_token_cache_max_entries")]
    pub token_cache_max_entries: usize,
}

const fn default_request_timeout_ms() -> u64 {
    15_000
}
const fn default_connect_timeout_ms() -> u64 {
    5_000
}
const fn default_per_host_rps() -> u32 {
    10
}
const fn default_per_host_burst() -> u32 {
    20
}
const fn default_rate_wait_ms() -> u64 {
    2_000
}
const fn default_max_response_bytes() -> u64 {
    8 * 1024 * 1024
}
const fn default_quota_warning_percent() -> u8 {
    10
}
const fn default_certificate_warning_days() -> u32 {
    14
}
const fn default_token_cache_max_entries() -> usize {
    crate::outbound::token_cache::DEFAULT_MAX_TOKENS
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            per_host_requests_per_second: default_per_host_rps(),
            per_host_burst: default_per_host_burst(),
            max_rate_wait_ms: default_rate_wait_ms(),
            max_response_bytes: default_max_response_bytes(),
            allow_private_networks: Vec::new(),
            quota_warning_percent: default_quota_warning_percent(),
            certificate_warning_days: default_certificate_warning_days(),
            ca_certificates: Vec::new(),
            token_cache_max_entries: default_token_cache_max_entries(),
        }
    }
}

/// Where AuthRef secrets are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SecretsSettings {
    /// Vault/OpenBao address, such as `https://vault.internal:8200`; `VAULT_ADDR` when unset.
    /// The operator chooses it, so it is not subject to the providers' SSRF guard.
    #[serde(default)]
    pub vault_addr: Option<String>,
    /// A file holding the Vault token (read at each cache miss, so it can be rotated). Used
    /// when `VAULT_TOKEN` is not set.
    #[serde(default)]
    pub vault_token_file: Option<PathBuf>,
    /// Vault Enterprise / OpenBao namespace sent as `X-Vault-Namespace`; `VAULT_NAMESPACE`
    /// when unset.
    #[serde(default)]
    pub vault_namespace: Option<String>,
    /// Timeout of one Vault request, in milliseconds.
    #[serde(default = "default_vault_timeout_ms")]
    pub vault_timeout_ms: u64,
    /// How long a resolved secret is reused, in seconds. A provider's 401 drops it earlier.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// A check turns `degraded` (`credential_expiring`) when the secret behind the
    /// integration's AuthRef expires within this many days, as its store tells (a Vault
    /// lease, or `custom_metadata.expires_at`); 0 turns the warning off.
    #[serde(default = "default_secret_expiry_warning_days")]
    pub expiry_warning_days: u32,
    /// The folder `authref://file/<path>` is relative to. Unset: the file backend is off.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
    /// The KV v2 mounts a tenant's `authref://vault/<mount>/…` may name.
    #[serde(default = "default_vault_mounts")]
    pub vault_mounts: Vec<String>,
    /// Each tenant's folder inside those mounts: `{tenant}` stands for the tenant id. A tenant
    /// resolves only `authref://vault/<mount>/<this folder>/…`.
    #[serde(default = "default_tenant_folder")]
    pub vault_tenant_prefix: String,
    /// Each tenant's folder under `secrets_dir`: a tenant resolves only
    /// `authref://file/<this folder>/…`, and no symlink may leave it.
    #[serde(default = "default_tenant_folder")]
    pub file_tenant_dir: String,
    /// Per tenant: the environment variables it may name, its own Vault credentials, and
    /// overrides of the folders above. A tenant not listed here gets the defaults and no
    /// environment variable at all.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSecretsSettings>,
}

/// `[connectors.secrets.tenants.<tenant>]`: where one tenant's secrets live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TenantSecretsSettings {
    /// Environment variables the tenant's `authref://env/<VAR>` may name: exact names, or a
    /// prefix followed by `*` (`ACME_*`). The daemon's own variables (`VAULT_*`, `DATABASE_*`,
    /// `STELLA_*`, … see `docs/security.md`) can never be named, whatever is listed.
    #[serde(default)]
    pub env: Vec<String>,
    /// Replaces `vault_tenant_prefix` for this tenant (`{tenant}` allowed).
    #[serde(default)]
    pub vault_prefix: Option<String>,
    /// Replaces `vault_mounts` for this tenant.
    #[serde(default)]
    pub vault_mounts: Option<Vec<String>>,
    /// Replaces `file_tenant_dir` for this tenant (`{tenant}` allowed).
    #[serde(default)]
    pub file_dir: Option<String>,
    /// The tenant's own Vault credentials, so that Vault's policies enforce the boundary too.
    /// Unset: the daemon's token (`VAULT_TOKEN` or `vault_token_file`).
    #[serde(default)]
    pub vault_auth: Option<VaultAuth>,
}

/// How the daemon logs in to Vault for one tenant. The references are the operator's (they
/// resolve without the tenant's namespace rules) and are never visible to the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "method")]
pub enum VaultAuth {
    /// A Vault token, read from this reference.
    Token {
        /// Where the token is, such as `authref://file/operator/vault-acme`.
        token: AuthRef,
    },
    /// AppRole: `POST /v1/auth/<mount>/login` with the role id and the secret id; the client
    /// token is reused until shortly before its lease ends.
    Approle {
        /// The AppRole auth mount.
        #[serde(default = "default_approle_mount")]
        mount: String,
        /// The role id (not a secret: an identifier, like a user name).
        role_id: String,
        /// Where the secret id is.
        secret_id: AuthRef,
    },
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

const fn default_secret_expiry_warning_days() -> u32 {
    14
}

fn default_vault_mounts() -> Vec<String> {
    vec!["secret".to_owned()]
}

fn default_tenant_folder() -> String {
    "tenants/{tenant}".to_owned()
}

const fn default_vault_timeout_ms() -> u64 {
    5_000
}
const fn default_cache_ttl_secs() -> u64 {
    300
}

impl Default for SecretsSettings {
    fn default() -> Self {
        Self {
            vault_addr: None,
            vault_token_file: None,
            vault_namespace: None,
            vault_timeout_ms: default_vault_timeout_ms(),
            cache_ttl_secs: default_cache_ttl_secs(),
            expiry_warning_days: default_secret_expiry_warning_days(),
            secrets_dir: None,
            vault_mounts: default_vault_mounts(),
            vault_tenant_prefix: default_tenant_folder(),
            file_tenant_dir: default_tenant_folder(),
            tenants: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_take_every_default_and_unknown_fields_are_refused() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.outbound.request_timeout_ms, 15_000);
        assert!(s.outbound.allow_private_networks.is_empty());
        let partial: Settings =
            serde_json::from_str(r#"{"secrets": {"cache_ttl_secs": 5}}"#).unwrap();
        assert_eq!(partial.secrets.cache_ttl_secs, 5);
        assert_eq!(partial.secrets.vault_timeout_ms, 5_000);
        assert!(serde_json::from_str::<Settings>(r#"{"vault_token": "x"}"#).is_err());
        assert!(serde_json::from_str::<Settings>(r#"{"outbound": {"nope": 1}}"#).is_err());
    }
}
