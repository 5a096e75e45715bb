//! External connector plugins: connectors that run as child processes, found on disk at run
//! time. The plugin author's guide is `docs/plugins.md`.
//!
//! # Layout
//! - [`config`]: [`PluginsConfig`], the operator's `[plugins]` settings (directories, limits).
//! - [`manifest`]: `plugin.toml`, checked strictly (`deny_unknown_fields`).
//! - [`discovery`]: [`discover`] scans plugin directories and returns the valid plugins and the
//!   rejected ones with typed reasons; [`diff`] compares a scan with what was known.
//! - [`protocol`]: the versioned JSON-RPC 2.0 wire protocol (one message per line on the child's
//!   stdin/stdout), the redacting [`Credential`], and the mapping of results to `HealthReport`.
//! - `process` (private): one running child, its pipes and its pending calls.
//! - [`supervisor`]: lazy start, handshake, timeouts, the concurrency limit, restart backoff.
//! - [`plugin`]: [`ExternalPlugin`] (a `ConnectorFactory`) and [`ExternalConnector`] (a
//!   `Connector`), which the registry and the health engine use like built-ins.
//! - [`conformance`]: the checks `plugin-conformance` runs against a plugin.
//!
//! # Why a child process
//! Plugins are untrusted code in any language. A child process bounds what a broken plugin can
//! do to the daemon: it crashes, hangs or floods only itself (every read is size-limited, every
//! call time-limited), and it never sees the daemon's memory or another plugin's credentials.
//! It still runs as the daemon's OS user; `docs/plugins.md` says what that means.

use std::time::Duration;

pub mod config;
pub mod conformance;
pub mod discovery;
pub mod manifest;
pub mod plugin;
mod process;
pub mod protocol;
pub mod supervisor;

pub use config::PluginsConfig;
pub use discovery::{
    DiscoveredPlugin, Discovery, DiscoveryDiff, Owner, RejectReason, Rejected, diff, discover,
};
pub use plugin::{CredentialSource, ExternalConnector, ExternalPlugin, NoCredentials};
pub use protocol::{Credential, PROTOCOL_VERSION, Resource, SUPPORTED_PROTOCOL_VERSIONS};

/// Default per-call timeout: below the health engine's default check timeout (10 s), so a
/// hung plugin is reported as a plugin failure (with its restart) rather than a provider
/// timeout. Plugins should bound their own provider calls below it.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(8);
/// Default time a process has to start and answer `initialize`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest message, either way, in bytes (one line of JSON).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default number of calls in flight to one plugin process.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;
/// Default first restart delay after a failure; it doubles per failure in a row.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default longest restart delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Default longest stderr line logged; the rest of the line is dropped.
pub const DEFAULT_MAX_STDERR_LINE: usize = 4096;

/// Limits and environment of plugin processes; one value for every plugin of a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// Longest wait for a free call slot, and then for the answer.
    pub call_timeout: Duration,
    /// Longest time from spawning the process to its `initialize` answer.
    pub start_timeout: Duration,
    /// Largest message (one line) read from or written to a plugin.
    pub max_message_bytes: usize,
    /// Calls in flight to one plugin; more wait (within the call timeout).
    pub max_concurrent_calls: usize,
    /// Restart delay after the first failure in a row.
    pub backoff_min: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// Longest stderr line logged.
    pub max_stderr_line: usize,
    /// `PATH` in the child's environment; [`supervisor::DEFAULT_PATH`] when `None`.
    pub path: Option<String>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_stderr_line: DEFAULT_MAX_STDERR_LINE,
            path: None,
        }
    }
}

/// Why a call to a plugin did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with a JSON-RPC error object (its message is untrusted text;
    /// `reason` is `error.data.reason` when the plugin names a health reason there).
    #[error("plugin error {code}: {message}")]
    Plugin {
        code: i64,
        message: String,
        reason: Option<crate::Reason>,
    },
    /// The process failed: it would not start, crashed, hung, wrote invalid or oversized
    /// output, spoke another protocol version, or is waiting out its restart backoff.
    #[error("{0}")]
    Failed(String),
}
