//! The NATS JetStream relay: hands every committed health event on to a JetStream stream, for
//! fleets of consumers that would rather subscribe than receive webhooks.
//!
//! # Subjects
//! `<prefix>.<tenant>.<type>`, such as
//! `stellaops.events.acme.dev.stellaops.integration.health.changed`. The tenant is exactly one
//! subject token: every character outside `[A-Za-z0-9_-]` is percent-encoded ([`encode_token`]:
//! `.` becomes `%2E`, `%` itself `%25`). So a consumer of tenant `acme` subscribes to
//! `stellaops.events.acme.>` and can never match tenant `acme.eu`
//! (`stellaops.events.acme%2Eeu.>`), and distinct tenants always get distinct subjects.
//!
//! # Messages
//! The body is the stored CloudEvent (structured mode), with the headers `Nats-Msg-Id` (the
//! event id: JetStream drops a repeat within the stream's duplicate window), `Content-Type:
//! application/cloudevents+json`, and `ce-id` / `ce-type` for consumers that route on headers.
//!
//! # Delivery
//! At least once, in outbox order. The relay reads the outbox after its cursor
//! ([`CURSOR`] in `event_cursors`), publishes a batch without waiting, awaits the acks in
//! order, and moves the cursor past the acknowledged prefix. A failure or a restart re-publishes
//! at most the unacknowledged tail, which `Nats-Msg-Id` de-duplicates. An event the server
//! refuses for good (larger than its `max_payload`) would hold the channel up, logged at every
//! retry; health events are a few hundred bytes.
//!
//! # Design
//! A task rather than an actor: one sequential loop that nothing queries. It shares nothing
//! with the health engine but the outbox and the hub's latest sequence number, which it wakes
//! on (and polls as a fallback), so a slow or absent NATS delays only this channel. Every
//! failure is logged and retried after a backoff; the client itself reconnects (with the same
//! backoff) and re-resolves its credential on each connection, so a rotated secret is picked up.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{Auth, AuthError, ConnectOptions, ServerAddr};
use connectors::authref::{AuthRef, AuthRefError};
use connectors::secrets::{SecretError, SecretResolver};
use sea_orm::DbErr;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StoredEvent;
use super::metrics;
use super::sink::{self, OutboxSink, Progress};
use crate::backoff::{Backoff, InvalidBackoff};
use crate::store::health::SystemStore;

/// The relay's row in `event_cursors`.
pub const CURSOR: &str = "nats";
/// The `Content-Type` of every message: a CloudEvent in structured mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The header JetStream de-duplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// The client name the server shows for our connection.
const CLIENT_NAME: &str = "stella-integrations";
/// The metrics channel label.
const CHANNEL: &str = "nats";
/// Largest accepted `batch`.
const MAX_BATCH: u64 = 10_000;
/// Jitter of every retry delay (±20 %).
const BACKOFF_JITTER: f64 = 0.2;

// === Settings ===

/// The `[events.nats]` settings. The publisher is off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
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

fn is_plain_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    servers: Vec<ServerAddr>,
    credentials: Option<AuthRef>,
    user: Option<String>,
    subject_prefix: String,
    stream: String,
    max_age: Duration,
    duplicate_window: Duration,
    batch: u64,
    timeout: Duration,
    poll_interval: Duration,
    backoff: Backoff,
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
    fn servers_for_log(&self) -> String {
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

// === Subjects ===

/// One subject token that stands for `s` alone: `[A-Za-z0-9_-]` stay as they are and every
/// other byte becomes `%XX` (so `.` is `%2E` and `%` is `%25`). Distinct strings give distinct
/// tokens, and a token never holds a separator, a wildcard or white space. The empty string,
/// which no tenant id is, becomes `%` (which no other string gives).
pub fn encode_token(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        return Cow::Borrowed("%");
    }
    if is_plain_token(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// `<prefix>.<tenant>.<type>`: the tenant as one token ([`encode_token`]); the type keeps its
/// dots, so consumers filter on it with the usual wildcards, each of its tokens encoded the same
/// way.
pub fn subject(prefix: &str, tenant: &str, event_type: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + tenant.len() + event_type.len() + 8);
    out.push_str(prefix);
    out.push('.');
    out.push_str(&encode_token(tenant));
    for token in event_type.split('.') {
        out.push('.');
        out.push_str(&encode_token(token));
    }
    out
}

/// The wildcard that matches every event of one tenant: `<prefix>.<tenant>.>`.
pub fn tenant_wildcard(prefix: &str, tenant: &str) -> String {
    format!("{prefix}.{}.>", encode_token(tenant))
}

// === The relay ===

/// Why a relay round failed; logged, then retried after a backoff. No message holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("resolving the NATS credential")]
    Credentials(#[source] SecretError),
    #[error("connecting to NATS")]
    Connect(#[source] async_nats::ConnectError),
    #[error("NATS is disconnected")]
    Disconnected,
    #[error("ensuring the JetStream stream")]
    Stream(#[source] jetstream::context::CreateStreamError),
    #[error("publishing event {seq}")]
    Publish {
        seq: i64,
        #[source]
        source: jetstream::context::PublishError,
    },
    #[error("encoding event {seq}")]
    Encode {
        seq: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading the outbox or moving the cursor")]
    Database(#[from] DbErr),
}

/// A running relay. Dropping it stops the relay without waiting; [`NatsRelay::stop`] waits.
pub struct NatsRelay {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NatsRelay {
    /// Starts relaying the outbox of `store` to NATS. `latest` is the hub's latest committed
    /// sequence number ([`super::hub::EventHub::latest`]); `secrets` resolves the credential.
    pub fn start(
        store: SystemStore,
        latest: watch::Receiver<i64>,
        config: RelayConfig,
        secrets: SecretResolver,
    ) -> Self {
        tracing::info!(
            message = "Relaying events to NATS JetStream.",
            servers = %config.servers_for_log(),
            stream = %config.stream,
            subjects = %config.stream_subjects(),
        );
        let (stop, stopped) = watch::channel(false);
        let drive = sink::Drive {
            latest: Some(latest),
            poll: config.poll_interval,
            backoff: config.backoff,
            stop: stopped,
        };
        let relay = Relay {
            store,
            config: Arc::new(config),
            secrets,
            js: None,
            check_stream: false,
            cursor: None,
        };
        Self {
            stop,
            task: sink::spawn(relay, drive),
        }
    }

    /// Stops the relay: an unfinished batch is abandoned (its events go out again on the next
    /// start, de-duplicated by JetStream).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The NATS sink: publishes the outbox after its cursor to JetStream.
struct Relay {
    store: SystemStore,
    config: Arc<RelayConfig>,
    secrets: SecretResolver,
    /// The connection, made at the first pass (and kept: the client reconnects by itself).
    js: Option<jetstream::Context>,
    /// Make sure of the stream before the next publish: after a failure the server may have
    /// lost it (a restart without its store).
    check_stream: bool,
    /// What the relay has published and recorded; read from the database at first use.
    cursor: Option<i64>,
}

// === impl Relay ===

#[async_trait::async_trait]
impl OutboxSink for Relay {
    type Error = RelayError;

    fn name(&self) -> &'static str {
        CHANNEL
    }

    async fn pass(&mut self) -> Result<Progress, RelayError> {
        let js = match &self.js {
            Some(js) => js.clone(),
            None => {
                let js = connect(&self.config, &self.secrets).await?;
                ensure_stream(&js, &self.config).await?;
                self.check_stream = false;
                self.js.insert(js).clone()
            }
        };
        if js.client().connection_state() != State::Connected {
            self.check_stream = true;
            return Err(RelayError::Disconnected);
        }
        if self.check_stream {
            ensure_stream(&js, &self.config).await?;
            self.check_stream = false;
        }
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => *self.cursor.insert(self.store.cursor(CURSOR).await?),
        };
        let events = self.store.events_after(cursor, self.config.batch).await?;
        if events.is_empty() {
            return Ok(Progress::Idle);
        }
        let result = publish(&js, &self.config, &events).await;
        let (acked, fresh) = match &result {
            Ok(done) | Err((done, _)) => *done,
        };
        if let Some(seq) = acked {
            self.store.set_cursor(CURSOR, seq).await?;
            self.cursor = Some(seq);
            metrics::published(CHANNEL, fresh);
        }
        if let Err((_, error)) = result {
            self.check_stream = true;
            return Err(error);
        }
        Ok(if events.len() as u64 >= self.config.batch {
            Progress::More
        } else {
            Progress::Idle
        })
    }
}

/// Publishes `events` in order without waiting, then awaits the acks in order. Returns the
/// last sequence number of the acknowledged prefix and how many of those JetStream stored (not
/// duplicates), with the first error if there was one.
async fn publish(
    js: &jetstream::Context,
    config: &RelayConfig,
    events: &[StoredEvent],
) -> Result<(Option<i64>, usize), ((Option<i64>, usize), RelayError)> {
    let mut pending = Vec::with_capacity(events.len());
    let mut failure = None;
    for event in events {
        let message = match message(event) {
            Ok(message) => message,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        let subject = config.subject(&event.tenant_id, &event.event_type);
        match js.send_publish(subject, message).await {
            Ok(ack) => pending.push((event.seq, ack)),
            Err(source) => {
                failure = Some(RelayError::Publish {
                    seq: event.seq,
                    source,
                });
                break;
            }
        }
    }
    let mut acked = None;
    let mut fresh = 0;
    for (seq, ack) in pending {
        match ack.await {
            Ok(ack) => {
                acked = Some(seq);
                fresh += usize::from(!ack.duplicate);
            }
            Err(source) => {
                failure = Some(RelayError::Publish { seq, source });
                break;
            }
        }
    }
    match failure {
        None => Ok((acked, fresh)),
        Some(error) => Err(((acked, fresh), error)),
    }
}

/// The message of one event: its CloudEvent as the body, and the headers.
fn message(event: &StoredEvent) -> Result<PublishMessage, RelayError> {
    let body = serde_json::to_vec(&event.payload).map_err(|source| RelayError::Encode {
        seq: event.seq,
        source,
    })?;
    let id = event.id.to_string();
    Ok(PublishMessage::build()
        .payload(body.into())
        .message_id(&id)
        .header("Content-Type", CONTENT_TYPE)
        .header("ce-id", id.as_str())
        .header("ce-type", event.event_type.as_str()))
}

async fn connect(
    config: &RelayConfig,
    secrets: &SecretResolver,
) -> Result<jetstream::Context, RelayError> {
    let mut options = match &config.credentials {
        Some(reference) => {
            // Fail early (and readably) when the secret cannot be resolved; the callback
            // resolves it again (from the cache) on every connection.
            secrets
                .resolve_operator(reference)
                .await
                .map_err(RelayError::Credentials)?;
            let secrets = secrets.clone();
            let reference = reference.clone();
            let user = config.user.clone();
            ConnectOptions::with_auth_callback(move |_nonce| {
                let secrets = secrets.clone();
                let reference = reference.clone();
                let user = user.clone();
                async move {
                    // Spawned, so that the future handed to the client is `Sync`.
                    let secret =
                        tokio::spawn(async move { secrets.resolve_operator(&reference).await })
                            .await
                            .map_err(|e| AuthError::new(e.to_string()))?
                            .map_err(|e| AuthError::new(e.to_string()))?;
                    let mut auth = Auth::new();
                    match user {
                        Some(user) => {
                            auth.username = Some(user);
                            auth.password = Some(secret.expose().to_owned());
                        }
                        None => auth.token = Some(secret.expose().to_owned()),
                    }
                    Ok(auth)
                }
            })
        }
        None => ConnectOptions::new(),
    };
    let backoff = config.backoff;
    options = options
        .name(CLIENT_NAME)
        .connection_timeout(config.timeout)
        .request_timeout(Some(config.timeout))
        .reconnect_delay_callback(move |attempts| {
            let attempt = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
            backoff.delay(attempt, rand::random::<f64>())
        });
    let client = options
        .connect(config.servers.as_slice())
        .await
        .map_err(RelayError::Connect)?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(config.timeout)
        .build(client))
}

/// Creates the stream when it does not exist; an existing one is left as configured.
async fn ensure_stream(js: &jetstream::Context, config: &RelayConfig) -> Result<(), RelayError> {
    let subjects = config.stream_subjects();
    let stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            description: Some("StellaOps Integrations health events (CloudEvents 1.0)".into()),
            subjects: vec![subjects.clone()],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            max_age: config.max_age,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(RelayError::Stream)?;
    let configured = &stream.cached_info().config.subjects;
    if !configured.contains(&subjects) {
        tracing::warn!(
            message = "The JetStream stream exists without the relay's subjects; events reach it only if its subjects cover them.",
            stream = %config.stream,
            expected = %subjects,
            configured = ?configured,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS subject matching: `*` matches one token, a final `>` one or more.
    fn matches(pattern: &str, subject: &str) -> bool {
        let mut subject = subject.split('.');
        for p in pattern.split('.') {
            match (p, subject.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (p, Some(s)) if p == s => {}
                _ => return false,
            }
        }
        subject.next().is_none()
    }

    fn decode_token(token: &str) -> Option<String> {
        if token == "%" {
            return Some(String::new());
        }
        let mut bytes = Vec::new();
        let mut rest = token.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    fn is_valid_token(token: &str) -> bool {
        !token.is_empty()
            && !token
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
    }

    const CHANGED: &str = "dev.stellaops.integration.health.changed";

    #[test]
    fn subjects_put_the_tenant_in_one_token() {
        assert_eq!(
            subject("stellaops.events", "acme", CHANGED),
            "stellaops.events.acme.dev.stellaops.integration.health.changed"
        );
        assert_eq!(
            subject("stellaops.events", "acme.eu", CHANGED),
            "stellaops.events.acme%2Eeu.dev.stellaops.integration.health.changed"
        );
        assert_eq!(encode_token("a_b-C9"), "a_b-C9");
        assert_eq!(encode_token("a%2Eb"), "a%252Eb");
        assert_eq!(encode_token("*>"), "%2A%3E");
        assert_eq!(encode_token(""), "%");
        let acme = tenant_wildcard("stellaops.events", "acme");
        assert_eq!(acme, "stellaops.events.acme.>");
        assert!(matches(
            &acme,
            &subject("stellaops.events", "acme", CHANGED)
        ));
        assert!(!matches(
            &acme,
            &subject("stellaops.events", "acme.eu", CHANGED)
        ));
        assert!(matches(
            "stellaops.events.*.dev.stellaops.integration.health.>",
            &subject("stellaops.events", "acme.eu", CHANGED)
        ));
    }

    #[test]
    fn the_matcher_follows_nats_wildcards() {
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.b", "a.b.c"));
    }

    proptest! {
        #[test]
        fn encoding_is_injective_and_reversible(a in "\\PC{0,12}", b in "\\PC{0,12}") {
            let (ea, eb) = (encode_token(&a), encode_token(&b));
            prop_assert!(is_valid_token(&ea));
            prop_assert_eq!(decode_token(&ea), Some(a.clone()));
            prop_assert_eq!(a == b, ea == eb);
        }

        #[test]
        fn a_tenant_wildcard_matches_only_that_tenant(
            a in "[A-Za-z0-9._-]{1,12}",
            b in "[A-Za-z0-9._-]{1,12}",
            kind in 0usize..super::super::EventKind::ALL.len(),
        ) {
            let prefix = "stellaops.events";
            let event_type = super::super::EventKind::ALL[kind].type_name();
            let wildcard = tenant_wildcard(prefix, &a);
            prop_assert_eq!(matches(&wildcard, &subject(prefix, &b, event_type)), a == b);
            prop_assert!(subject(prefix, &b, event_type).split('.').all(is_valid_token));
        }
    }

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

    #[test]
    fn messages_carry_the_cloud_event_and_its_headers() {
        let id = uuid::Uuid::now_v7();
        let event = StoredEvent {
            seq: 7,
            id,
            tenant_id: "acme".into(),
            integration_id: None,
            event_type: CHANGED.into(),
            time: chrono::Utc::now(),
            payload: serde_json::json!({"id": id.to_string(), "type": CHANGED}),
        };
        let publish = message(&event).unwrap();
        let outbound = publish.outbound_message("x");
        let headers = outbound.headers.expect("headers");
        assert_eq!(
            headers.get(MSG_ID_HEADER).map(|v| v.as_str()),
            Some(id.to_string().as_str())
        );
        assert_eq!(
            headers.get("Content-Type").map(|v| v.as_str()),
            Some(CONTENT_TYPE)
        );
        assert_eq!(headers.get("ce-type").map(|v| v.as_str()), Some(CHANGED));
        let body: serde_json::Value = serde_json::from_slice(&outbound.payload).unwrap();
        assert_eq!(body, event.payload);
    }
}
