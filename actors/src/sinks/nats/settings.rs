//! `[events.nats]`: the settings, and their validation into a [`RelayConfig`].

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use async_nats::ServerAddr;
use connectors::authref::{AuthRef, AuthRefError};
use serde::{Deserialize, Serialize};

use super::subject::{is_plain_token, subject};
use crate::backoff::{Backoff, InvalidBackoff};
use crate::events::incidents::IncidentMembers;

/// Largest accepted `batch`.
const MAX_BATCH: u64 = 10_000;
/// Jitter of every retry delay (±20 %).
const BACKOFF_JITTER: f64 = 0.2;
/// The `[events.nats]` settings. The publisher is off unless `url` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// The server, such as `nats://127.0.0.1:4222` or `tls://nats.example.com:4222`; several,
    /// comma-separated, for a cluster. Unset or empty turns the publisher off. Never holds
    /// credentials (they are refused here, so the URL is safe to log): see `credentials`.
    #[serde(default)]
    pub url: Option<String>,
    /// AuthRef URI of the credential, such as `authref://vault/nats/stella#token`: a token, or
    /// the password of `user` when that is set. Resolved at every (re)connection.
    #[serde(default)]
    pub credentials: Option<String>,
    /// User name for user/password authentication; `credentials` then holds the password.
    #[serde(default)]
    pub user: Option<String>,
    /// The first tokens of every subject: `<prefix>.<tenant>.<type>`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream, created with subjects `<prefix>.>` when it does not exist. An
    /// existing stream is used as it is configured.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// How long the stream keeps an event (when the relay creates the stream).
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a repeat (when the relay creates
    /// the stream): the window in which a re-published event is de-duplicated.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_seconds: u64,
    /// Events published before their acks are awaited.
    #[serde(default = "default_batch")]
    pub batch: u64,
    /// Longest wait for a connection, a JetStream API answer or a publish ack.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Outbox poll interval when no commit wakes the relay (the hub wakes it at once).
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// First retry delay after a failure (and between reconnection attempts); doubles.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// `suppress` (default): while an incident is open, its members' status events are not
    /// published one by one, only the incident's; `deliver`: both.
    #[serde(default)]
    pub incident_members: IncidentMembers,
}

fn default_subject_prefix() -> String {
    "stellaops.events".into()
}
fn default_stream() -> String {
    "STELLA_EVENTS".into()
}
const fn default_max_age() -> u64 {
    7 * 86_400
}
const fn default_duplicate_window() -> u64 {
    // JetStream's own default.
    120
}
const fn default_batch() -> u64 {
    256
}
const fn default_timeout_ms() -> u64 {
    5_000
}
const fn default_poll_ms() -> u64 {
    1_000
}
const fn default_backoff_min_ms() -> u64 {
    500
}
const fn default_backoff_max_ms() -> u64 {
    30_000
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: None,
            credentials: None,
            user: None,
            subject_prefix: default_subject_prefix(),
            stream: default_stream(),
            max_age_seconds: default_max_age(),
            duplicate_window_seconds: default_duplicate_window(),
            batch: default_batch(),
            timeout_ms: default_timeout_ms(),
            poll_interval_ms: default_poll_ms(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            incident_members: IncidentMembers::default(),
        }
    }
}

/// Why the `[events.nats]` settings cannot be used. No message repeats a URL or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsConfigError {
    #[error("url: server {index} is not a NATS URL: {reason}")]
    Url { index: usize, reason: String },
    #[error("url: server {index} uses {scheme}://; only nats:// and tls:// are supported")]
    Scheme { index: usize, scheme: String },
    #[error(
        "url: server {index} carries credentials; put them in a secret store and name it in `credentials`"
    )]
    CredentialsInUrl { index: usize },
    #[error("credentials: {0}")]
    Credentials(#[from] AuthRefError),
    #[error("user is set without credentials (its password)")]
    UserWithoutPassword,
    #[error("subject_prefix: dot-separated tokens of [A-Za-z0-9_-] expected")]
    SubjectPrefix,
    #[error("stream: 1 to 64 characters of [A-Za-z0-9_-] expected")]
    Stream,
    #[error("duplicate_window_seconds must be from 1 to max_age_seconds")]
    DuplicateWindow,
    #[error("batch must be from 1 to {MAX_BATCH}")]
    Batch,
    #[error("timeout_ms and poll_interval_ms must be positive")]
    Zero,
    #[error("backoff: {0}")]
    Backoff(#[from] InvalidBackoff),
}

impl NatsSettings {
    /// The validated relay configuration, or `None` when no URL is configured.
    ///
    /// # Errors
    /// [`NatsConfigError`] for the first setting that cannot be used.
    pub fn relay_config(&self) -> Result<Option<RelayConfig>, NatsConfigError> {
        let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let servers = url
            .split(',')
            .enumerate()
            .map(|(index, s)| server(index, s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = self
            .credentials
            .as_deref()
            .map(AuthRef::from_str)
            .transpose()?;
        if self.user.is_some() && credentials.is_none() {
            return Err(NatsConfigError::UserWithoutPassword);
        }
        if !is_subject_prefix(&self.subject_prefix) {
            return Err(NatsConfigError::SubjectPrefix);
        }
        if !is_stream_name(&self.stream) {
            return Err(NatsConfigError::Stream);
        }
        if self.duplicate_window_seconds == 0
            || self.duplicate_window_seconds > self.max_age_seconds
        {
            return Err(NatsConfigError::DuplicateWindow);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(NatsConfigError::Batch);
        }
        if self.timeout_ms == 0 || self.poll_interval_ms == 0 {
            return Err(NatsConfigError::Zero);
        }
        let backoff = Backoff::try_new(
            Duration::from_millis(self.backoff_min_ms),
            Duration::from_millis(self.backoff_max_ms),
            BACKOFF_JITTER,
        )?;
        Ok(Some(RelayConfig {
            servers,
            credentials,
            user: self.user.clone(),
            subject_prefix: self.subject_prefix.clone(),
            stream: self.stream.clone(),
            max_age: Duration::from_secs(self.max_age_seconds),
            duplicate_window: Duration::from_secs(self.duplicate_window_seconds),
            batch: self.batch,
            timeout: Duration::from_millis(self.timeout_ms),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            backoff,
            incident_members: self.incident_members,
        }))
    }
}

fn server(index: usize, s: &str) -> Result<ServerAddr, NatsConfigError> {
    let addr = ServerAddr::from_str(s).map_err(|e| NatsConfigError::Url {
        index,
        reason: e.to_string(),
    })?;
    if addr.username().is_some_and(|u| !u.is_empty()) || addr.password().is_some() {
        return Err(NatsConfigError::CredentialsInUrl { index });
    }
    let scheme = addr.clone().into_inner().scheme().to_owned();
    if scheme != "nats" && scheme != "tls" {
        return Err(NatsConfigError::Scheme { index, scheme });
    }
    Ok(addr)
}

fn is_subject_prefix(prefix: &str) -> bool {
    prefix.split('.').all(is_plain_token)
}

fn is_stream_name(name: &str) -> bool {
    name.len() <= 64 && is_plain_token(name)
}

/// Validated relay settings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub(super) servers: Vec<ServerAddr>,
    pub(super) credentials: Option<AuthRef>,
    pub(super) user: Option<String>,
    pub(super) subject_prefix: String,
    pub(super) stream: String,
    pub(super) max_age: Duration,
    pub(super) duplicate_window: Duration,
    pub(super) batch: u64,
    pub(super) timeout: Duration,
    pub(super) poll_interval: Duration,
    pub(super) backoff: Backoff,
    pub(super) incident_members: IncidentMembers,
}

impl RelayConfig {
    /// The subject of an event of `tenant` and `event_type`.
    pub fn subject(&self, tenant: &str, event_type: &str) -> String {
        subject(&self.subject_prefix, tenant, event_type)
    }

    /// The subjects of the stream: everything under the prefix.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// The servers, for logs (they never carry credentials).
    pub(super) fn servers_for_log(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", s.clone().into_inner());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_like: &[(&str, &str)]) -> NatsSettings {
        let mut map = serde_json::Map::new();
        for (k, v) in toml_like {
            map.insert((*k).into(), serde_json::from_str(v).unwrap());
        }
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    #[test]
    fn off_without_a_url_and_defaults_otherwise() {
        assert!(NatsSettings::default().relay_config().unwrap().is_none());
        assert!(
            settings(&[("url", "\"  \"")])
                .relay_config()
                .unwrap()
                .is_none()
        );
        let config = settings(&[("url", "\"nats://127.0.0.1:4222\"")])
            .relay_config()
            .unwrap()
            .unwrap();
        assert_eq!(config.stream, "STELLA_EVENTS");
        assert_eq!(config.stream_subjects(), "stellaops.events.>");
        assert_eq!(config.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.batch, 256);
        assert_eq!(config.servers_for_log(), "nats://127.0.0.1:4222");
        let cluster = settings(&[("url", "\"nats://a:4222, tls://b:4222\"")])
            .relay_config()
            .unwrap()
            .unwrap();
        assert_eq!(cluster.servers.len(), 2);
    }

    #[test]
    fn unusable_settings_are_refused_without_echoing_secrets() {
        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![("url", "\"nats://127.0.0.1:4222\"")];
            all.extend_from_slice(pairs);
            settings(&all).relay_config().unwrap_err()
        };
        let error = refused(&[("url", "\"nats://user:hunter2@127.0.0.1:4222\"")]);
        assert_eq!(error, NatsConfigError::CredentialsInUrl { index: 0 });
        assert!(!error.to_string().contains("hunter2"));
        assert_eq!(
            refused(&[("url", "\"nats://127.0.0.1, nats://s3cr3t-token@h\"")]),
            NatsConfigError::CredentialsInUrl { index: 1 }
        );
        assert!(matches!(
            refused(&[("url", "\"ws://127.0.0.1:8080\"")]),
            NatsConfigError::Scheme { .. }
        ));
        assert!(matches!(
            refused(&[("url", "\"http://127.0.0.1\"")]),
            NatsConfigError::Url { .. }
        ));
        assert!(matches!(
            refused(&[("credentials", "\"vault:nats\"")]),
            NatsConfigError::Credentials(_)
        ));
        assert_eq!(
            refused(&[("user", "\"stella\"")]),
            NatsConfigError::UserWithoutPassword
        );
        for prefix in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            let value = serde_json::to_string(prefix).unwrap();
            assert_eq!(
                refused(&[("subject_prefix", &value)]),
                NatsConfigError::SubjectPrefix,
                "{prefix:?}"
            );
        }
        for stream in ["", "A.B", "A*", "A B", "A/B"] {
            let value = serde_json::to_string(stream).unwrap();
            assert_eq!(refused(&[("stream", &value)]), NatsConfigError::Stream);
        }
        assert_eq!(
            refused(&[("duplicate_window_seconds", "0")]),
            NatsConfigError::DuplicateWindow
        );
        assert_eq!(
            refused(&[("max_age_seconds", "60")]),
            NatsConfigError::DuplicateWindow
        );
        assert_eq!(refused(&[("batch", "0")]), NatsConfigError::Batch);
        assert_eq!(refused(&[("timeout_ms", "0")]), NatsConfigError::Zero);
        assert!(matches!(
            refused(&[("backoff_min_ms", "0")]),
            NatsConfigError::Backoff(_)
        ));
        // Unknown keys are refused when parsing.
        let unknown = serde_json::json!({"url": "nats://127.0.0.1", "subjects": "x"});
        assert!(serde_json::from_value::<NatsSettings>(unknown).is_err());
    }

    #[test]
    fn user_and_credentials_go_together() {
        let config = settings(&[
            ("url", "\"nats://127.0.0.1:4222\""),
            ("user", "\"stella\""),
            ("credentials", "\"authref://env/NATS_PASSWORD\""),
        ])
        .relay_config()
        .unwrap()
        .unwrap();
        assert_eq!(config.user.as_deref(), Some("stella"));
        assert!(config.credentials.is_some());
    }
}
