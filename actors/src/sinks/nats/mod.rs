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
//! At least once, in outbox order. The relay reads the outbox after what it has published,
//! publishes a batch without waiting, and, while that batch's acks come back, reads and
//! publishes the next one; then it awaits the earlier batch's acks in order and moves its
//! cursor ([`CURSOR`] in `event_cursors`) past the acknowledged prefix. So a round trip to
//! JetStream and one to the database overlap, and at most two batches are unacknowledged. A
//! failure or a restart re-publishes at most that unacknowledged tail, which `Nats-Msg-Id`
//! de-duplicates. An event the server
//! refuses for good (larger than its `max_payload`) would hold the channel up, logged at every
//! retry; health events are a few hundred bytes.
//!
//! # Design
//! A task rather than an actor: one sequential loop that nothing queries. It shares nothing
//! with the health engine but the outbox and the hub's latest sequence number, which it wakes
//! on (and polls as a fallback), so a slow or absent NATS delays only this channel. Every
//! failure is logged and retried after a backoff; the client itself reconnects (with the same
//! backoff) and re-resolves its credential on each connection, so a rotated secret is picked up.

//!
//! # Layout
//! - `settings`: `[events.nats]`, validated into a [`RelayConfig`].
//! - `subject`: subject encoding, one token per tenant.
//! - This file: the relay, an [`OutboxSink`] driven by [`sink::spawn`].

use std::collections::VecDeque;
use std::sync::Arc;

use async_nats::connection::State;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{Auth, AuthError, ConnectOptions};
use connectors::secrets::{SecretError, SecretResolver};
use sea_orm::DbErr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::{StoredEvent, metrics};
use crate::sinks::{self as sink, OutboxSink, Progress};
use crate::store::SystemStore;

mod settings;
mod subject;

pub use settings::{NatsConfigError, NatsSettings, RelayConfig};
pub use subject::{encode_token, subject, tenant_wildcard};

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
    /// Starts relaying the outbox to NATS, woken by the hub's commits; the context's resolver
    /// resolves the credential.
    pub fn start(ctx: &sink::Context, config: RelayConfig) -> Self {
        let (store, latest, secrets) = (
            ctx.store.system(),
            ctx.hub.channel_wake(),
            ctx.env.secrets.clone(),
        );
        let gate = ctx.hub.gate();
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
            gate,
            in_flight: VecDeque::new(),
            published: 0,
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

#[async_trait::async_trait]
impl sink::Started for NatsRelay {
    async fn stop(self: Box<Self>) {
        NatsRelay::stop(*self).await;
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
    /// How far the outbox may be read (the incident correlator's gate).
    gate: watch::Receiver<i64>,
    /// Read after the cursor, acks not yet awaited, in outbox order: at most two batches (the
    /// one being read and sent, and the one before). An event left to its incident was not
    /// published and has no ack to wait for.
    in_flight: VecDeque<(i64, Option<PublishAckFuture>)>,
    /// The last event read (the cursor, or beyond it while acks are awaited).
    published: i64,
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
            self.abandon();
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
        if self.in_flight.is_empty() {
            self.published = cursor;
        }
        // Publish the next batch while the previous one's acks are still coming back, never
        // past the incident correlator's gate.
        let batch = self.config.batch;
        let until = *self.gate.borrow();
        let events = self
            .store
            .events_between(self.published, until, batch)
            .await?;
        let more = events.len() as u64 >= batch;
        let fresh_batch = events.len();
        let sent = publish(&js, &self.config, &events, &mut self.in_flight).await;
        if let Some(seq) = self.in_flight.back().map(|(seq, _)| *seq) {
            self.published = seq;
        }
        // Await every ack but the batch just sent while there is more to read; all of them
        // once the outbox is drained (or a publish failed).
        let keep = if more && sent.is_ok() { fresh_batch } else { 0 };
        let awaited = await_acks(&mut self.in_flight, keep).await;
        let (acked, fresh) = match &awaited {
            Ok(done) | Err((done, _)) => *done,
        };
        if let Some(seq) = acked {
            self.store.set_cursor(CURSOR, seq).await?;
            self.cursor = Some(seq);
            metrics::published(CHANNEL, fresh);
        }
        if let Err(error) = sent.and(awaited.map(|_| ()).map_err(|(_, e)| e)) {
            self.abandon();
            self.check_stream = true;
            return Err(error);
        }
        Ok(if more || !self.in_flight.is_empty() {
            Progress::More
        } else {
            Progress::Idle
        })
    }
}

impl Relay {
    /// Forgets the publishes whose acks were not awaited: they go out again from the cursor
    /// (JetStream drops those it stored, by `Nats-Msg-Id`).
    fn abandon(&mut self) {
        self.in_flight.clear();
        if let Some(cursor) = self.cursor {
            self.published = cursor;
        }
    }
}

/// Publishes `events` in order without waiting, appending each ack to be awaited to
/// `in_flight`; stops at the first failure.
async fn publish(
    js: &jetstream::Context,
    config: &RelayConfig,
    events: &[StoredEvent],
    in_flight: &mut VecDeque<(i64, Option<PublishAckFuture>)>,
) -> Result<(), RelayError> {
    for event in events {
        // An open incident's members' events are left to the incident unless configured;
        // the cursor still moves past them in order.
        if !config.incident_members.admits(event.incident_id) {
            in_flight.push_back((event.seq, None));
            continue;
        }
        let message = message(event)?;
        let subject = config.subject(&event.tenant_id, &event.event_type);
        let ack =
            js.send_publish(subject, message)
                .await
                .map_err(|source| RelayError::Publish {
                    seq: event.seq,
                    source,
                })?;
        in_flight.push_back((event.seq, Some(ack)));
    }
    Ok(())
}

/// Awaits the acks in order until `keep` are left. Returns the last sequence number of the
/// acknowledged prefix and how many of those JetStream stored (not duplicates), with the
/// first error if there was one (the acks after it are left in `in_flight`).
async fn await_acks(
    in_flight: &mut VecDeque<(i64, Option<PublishAckFuture>)>,
    keep: usize,
) -> Result<(Option<i64>, usize), ((Option<i64>, usize), RelayError)> {
    let mut acked = None;
    let mut fresh = 0;
    while in_flight.len() > keep {
        let Some((seq, ack)) = in_flight.pop_front() else {
            break;
        };
        let Some(ack) = ack else {
            acked = Some(seq);
            continue;
        };
        match ack.await {
            Ok(ack) => {
                acked = Some(seq);
                fresh += usize::from(!ack.duplicate);
            }
            Err(source) => return Err(((acked, fresh), RelayError::Publish { seq, source })),
        }
    }
    Ok((acked, fresh))
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
    // Two batches of acks may be outstanding; the client's default bound (5,000) would make a
    // larger window wait on itself.
    Ok(jetstream::ContextBuilder::new()
        .timeout(config.timeout)
        .max_ack_inflight(
            usize::try_from(2 * config.batch)
                .unwrap_or(usize::MAX)
                .max(1),
        )
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

    const CHANGED: &str = "dev.stellaops.integration.health.changed";

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
            incident_id: None,
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
