//! The typed configuration of a GitHub App integration.

use schemars::JsonSchema;
use serde::Deserialize;

/// The public GitHub API.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";

/// Configuration of a GitHub App integration. The App's private key (PEM) is the secret
/// behind the integration's AuthRef.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The numeric App ID; either this or `clientId` is required.
    pub app_id: Option<u64>,
    /// The App's client ID (`Iv1.…`), accepted by GitHub in place of the App ID.
    pub client_id: Option<String>,
    /// The installation to act as.
    pub installation_id: u64,
    /// The API root; `https://<host>/api/v3` for GitHub Enterprise Server.
    #[serde(default = "default_api_base_url")]
    #[schemars(regex(pattern = crate::config::HTTP_URL_PATTERN))]
    pub api_base_url: String,
    /// Health turns `degraded` when less than this percentage of the core rate limit is left.
    #[serde(default = "default_quota_warning_percent")]
    #[schemars(range(max = 100))]
    pub quota_warning_percent: u8,
    /// Permissions the installation must grant for what this integration is used for, such
    /// as `{"contents": "read", "repository_hooks": "write"}` (`read` < `write` < `admin`).
    /// One missing or lower makes health `degraded` (`forbidden`), naming it.
    #[serde(default)]
    pub required_permissions: std::collections::BTreeMap<String, PermissionLevel>,
}

/// A GitHub App permission level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    Read,
    Write,
    Admin,
}

impl PermissionLevel {
    /// GitHub's name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionLevel::Read => "read",
            PermissionLevel::Write => "write",
            PermissionLevel::Admin => "admin",
        }
    }

    /// The level GitHub names `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "read" => Some(PermissionLevel::Read),
            "write" => Some(PermissionLevel::Write),
            "admin" => Some(PermissionLevel::Admin),
            _ => None,
        }
    }
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

const fn default_quota_warning_percent() -> u8 {
    10
}

impl Config {
    /// The JWT issuer: the client ID when given (GitHub's recommendation), else the App ID.
    pub fn issuer(&self) -> String {
        match (&self.client_id, self.app_id) {
            (Some(c), _) if !c.is_empty() => c.clone(),
            (_, Some(id)) => id.to_string(),
            _ => String::new(),
        }
    }
}
