//! `SIGHUP`: re-read the configuration and apply what can change without a restart (the API
//! keys, the JWT settings, the log filter).
//!
//! A new configuration is validated as at start-up ([`crate::check`]) and refused whole, with
//! an ERROR, when anything in it is invalid: the configuration in force stays. Settings that
//! need a restart are left as they are, with one WARN naming those that changed.

use std::sync::{Arc, Mutex};

use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::telemetry;

/// Keys whose new value applies at once; every other change waits for a restart.
const RELOADABLE: &[&str] = &["auth.api_keys", "auth.jwt", "log.filter"];

/// What a reload changes, and the configuration in force.
pub struct Reloader {
    auth: Arc<Authenticator>,
    /// The configuration in force: the one started with, with the reloaded keys replaced.
    current: Mutex<Config>,
}

/// Why a new configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("loading the configuration")]
    Load(#[source] ConfigError),
    #[error("checking the configuration")]
    Check(#[source] crate::Error),
    #[error(transparent)]
    Filter(#[from] telemetry::FilterError),
    #[error("invalid API key configuration")]
    Keys(#[from] crate::auth::api_key::KeyConfigError),
}

impl Reloader {
    pub(crate) fn new(auth: Arc<Authenticator>, config: Config) -> Self {
        Self {
            auth,
            current: Mutex::new(config),
        }
    }

    /// Applies `loaded` (the configuration read again) and logs the outcome: INFO when
    /// applied, one WARN naming the changed settings that need a restart, an ERROR with the
    /// reason when refused.
    pub fn reload(&self, loaded: Result<Config, ConfigError>) {
        match self.apply(loaded) {
            Ok(()) => {}
            Err(error) => tracing::error!(
                message = "The new configuration is refused; the one in force stays.",
                error = %chain(&error),
            ),
        }
    }

    fn apply(&self, loaded: Result<Config, ConfigError>) -> Result<(), ReloadError> {
        let new = loaded.map_err(ReloadError::Load)?;
        crate::check(&new).map_err(ReloadError::Check)?;
        telemetry::check_filter(&new.log.filter)?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let needs_restart = changed_outside_reloadable(&current, &new);
        self.auth.reload(&new.auth)?;
        telemetry::set_filter(&new.log.filter)?;
        current.auth.api_keys = new.auth.api_keys.clone();
        current.auth.jwt = new.auth.jwt.clone();
        current.log.filter = new.log.filter.clone();
        tracing::info!(
            message = "Configuration reloaded.",
            api_keys = new.auth.api_keys.len(),
            jwt = new.auth.jwt.is_some(),
            filter = %new.log.filter,
        );
        if !needs_restart.is_empty() {
            tracing::warn!(
                message = "Changed settings that need a restart are not applied.",
                settings = %needs_restart.join(", "),
            );
        }
        Ok(())
    }
}

/// The error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The keys (as `section.key`) whose value differs between `old` and `new`, outside
/// [`RELOADABLE`]. Names only: values may be secrets.
fn changed_outside_reloadable(old: &Config, new: &Config) -> Vec<String> {
    let flatten = |config: &Config| {
        let mut keys = std::collections::BTreeMap::new();
        if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(config) {
            for (section, value) in sections {
                match value {
                    toml::Value::Table(table) => {
                        for (key, value) in table {
                            keys.insert(format!("{section}.{key}"), value);
                        }
                    }
                    value => {
                        keys.insert(section, value);
                    }
                }
            }
        }
        keys
    };
    let (old, new) = (flatten(old), flatten(new));
    let mut names: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|key| !RELOADABLE.contains(&key.as_str()))
        .filter(|key| old.get(*key) != new.get(*key))
        .cloned()
        .collect();
    names.dedup();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_outside_the_reloadable_keys_are_named() {
        let old: Config = toml::from_str("").unwrap();
        let new: Config = toml::from_str(
            "[log]\nfilter = \"debug\"\n[auth.jwt]\nissuer = \"i\"\naudiences = []\njwks_url = \"u\"\n\
             [health]\ninterval_seconds = 5\n[database]\nurl = \"postgres://u:pw@h/d\"\n",
        )
        .unwrap();
        assert_eq!(
            changed_outside_reloadable(&old, &new),
            ["database.url", "health.interval_seconds"]
        );
        assert!(changed_outside_reloadable(&old, &old).is_empty());
    }
}
