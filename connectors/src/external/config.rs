//! The operator's settings of external plugins, as the daemon's configuration holds them
//! (proposed section `[plugins]`). Every key is optional; defaults are the `DEFAULT_*`
//! constants of [`super`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PluginSettings;

/// `[plugins]`: where plugins are found and the limits their processes run under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PluginsConfig {
    /// Directories scanned for `<plugin>/plugin.toml`, in order; on a clash of provider type
    /// or id, the plugin found first wins. Empty: no external plugins.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// Longest wait for a free call slot, then for a plugin's answer, in milliseconds. Keep
    /// it below the health engine's check timeout.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Longest time from starting a plugin process to its `initialize` answer, in ms.
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
    /// Largest message (one JSON line) read from or written to a plugin, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Calls in flight to one plugin process.
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: usize,
    /// Restart delay after a plugin process fails, in ms; doubles per failure in a row.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Longest restart delay, in ms.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Longest plugin stderr line logged, in bytes.
    #[serde(default = "default_max_stderr_line_bytes")]
    pub max_stderr_line_bytes: usize,
    /// `PATH` of plugin processes (their only other variable is `STELLA_PLUGIN_DIR`);
    /// `/usr/local/bin:/usr/bin:/bin` when unset. The daemon's own `PATH` is not inherited.
    #[serde(default)]
    pub path: Option<String>,
}

const fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}
const fn default_call_timeout_ms() -> u64 {
    millis(super::DEFAULT_CALL_TIMEOUT)
}
const fn default_start_timeout_ms() -> u64 {
    millis(super::DEFAULT_START_TIMEOUT)
}
const fn default_max_message_bytes() -> usize {
    super::DEFAULT_MAX_MESSAGE_BYTES
}
const fn default_max_concurrent_calls() -> usize {
    super::DEFAULT_MAX_CONCURRENT_CALLS
}
const fn default_backoff_min_ms() -> u64 {
    millis(super::DEFAULT_BACKOFF_MIN)
}
const fn default_backoff_max_ms() -> u64 {
    millis(super::DEFAULT_BACKOFF_MAX)
}
const fn default_max_stderr_line_bytes() -> usize {
    super::DEFAULT_MAX_STDERR_LINE
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dirs: Vec::new(),
            call_timeout_ms: default_call_timeout_ms(),
            start_timeout_ms: default_start_timeout_ms(),
            max_message_bytes: default_max_message_bytes(),
            max_concurrent_calls: default_max_concurrent_calls(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_stderr_line_bytes: default_max_stderr_line_bytes(),
            path: None,
        }
    }
}

/// Smallest accepted message limit: a request carries a configuration of up to 64 KiB.
pub const MIN_MESSAGE_BYTES: usize = 128 * 1024;

impl PluginsConfig {
    /// The process settings, checked.
    ///
    /// # Errors
    /// The key and what is wrong with it.
    pub fn settings(&self) -> Result<PluginSettings, String> {
        let positive = [
            ("call_timeout_ms", self.call_timeout_ms),
            ("start_timeout_ms", self.start_timeout_ms),
            ("backoff_min_ms", self.backoff_min_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("plugins.{key}: must be greater than 0"));
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err("plugins.backoff_max_ms: must be at least backoff_min_ms".into());
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(format!(
                "plugins.max_message_bytes: must be at least {MIN_MESSAGE_BYTES}"
            ));
        }
        if self.max_concurrent_calls == 0 {
            return Err("plugins.max_concurrent_calls: must be at least 1".into());
        }
        if self.max_stderr_line_bytes == 0 {
            return Err("plugins.max_stderr_line_bytes: must be at least 1".into());
        }
        Ok(PluginSettings {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            start_timeout: Duration::from_millis(self.start_timeout_ms),
            max_message_bytes: self.max_message_bytes,
            max_concurrent_calls: self.max_concurrent_calls,
            backoff_min: Duration::from_millis(self.backoff_min_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            max_stderr_line: self.max_stderr_line_bytes,
            path: self.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_process_defaults() {
        let parsed: PluginsConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, PluginsConfig::default());
        assert_eq!(parsed.settings().unwrap(), PluginSettings::default());
    }

    #[test]
    fn keys_parse_and_bad_values_are_refused() {
        let parsed: PluginsConfig = toml::from_str(
            r#"
            dirs = ["/opt/stella/plugins", "plugins"]
            call_timeout_ms = 5000
            max_concurrent_calls = 4
            path = "/usr/bin:/bin"
            "#,
        )
        .unwrap();
        assert_eq!(parsed.dirs.len(), 2);
        let settings = parsed.settings().unwrap();
        assert_eq!(settings.call_timeout, Duration::from_secs(5));
        assert_eq!(settings.max_concurrent_calls, 4);
        assert_eq!(settings.path.as_deref(), Some("/usr/bin:/bin"));
        assert!(toml::from_str::<PluginsConfig>("dir = []").is_err());
        for bad in [
            PluginsConfig {
                call_timeout_ms: 0,
                ..PluginsConfig::default()
            },
            PluginsConfig {
                backoff_max_ms: 1,
                ..PluginsConfig::default()
            },
            PluginsConfig {
                max_message_bytes: 1024,
                ..PluginsConfig::default()
            },
            PluginsConfig {
                max_concurrent_calls: 0,
                ..PluginsConfig::default()
            },
        ] {
            assert!(bad.settings().is_err(), "{bad:?}");
        }
    }
}
