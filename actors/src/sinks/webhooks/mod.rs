//! Webhook delivery: the outbox fanned out to the tenants' subscriptions, then POSTed, signed,
//! in order per (subscription, integration), at least once.
//!
//! # Layout
//! - [`WebhookSettings`]: the `[events.webhooks]` section.
//! - [`relay`]: reads the outbox after its cursor (`webhooks` in `event_cursors`) and queues one
//!   `webhook_deliveries` row per matching enabled subscription, moving the cursor in the same
//!   transaction ([`crate::store::webhooks::WebhookStore::fan_out`]).
//! - [`heads`]: the queue's heads in memory, kept between refills: new rows are read by id,
//!   and a key or a subscription is read again only when its memory of it is incomplete or
//!   the catalog changed it.
//! - [`worker`]: attempts the oldest pending delivery of each (subscription, ordering key),
//!   different keys concurrently (a batched subscription's attempt carries a prefix of
//!   several keys' deliveries), and records results in batches.
//! - [`target`]: which target URLs a subscription may have, and one signed POST.
//! - [`certificates`]: the certificate each target presents, kept on its subscription and
//!   announced once when it comes within the warning horizon.
//! - [`signature`]: the HMAC-SHA256 signature and its headers.
//! - retry delays: [`crate::backoff::FullJitter`], exponential with full jitter.
//!
//! # Why this shape
//! - Fan-out and delivery are separate, each with its own durable state: the relay's cursor
//!   and the queue move together, so a crash neither skips nor duplicates a fan-out; a delivery
//!   is marked delivered only after its 2xx, so a crash mid-delivery re-sends it (same event
//!   id, which is also the `Idempotency-Key`).
//! - Order per integration: only the oldest pending rows of a (subscription, ordering key) are
//!   ever attempted, from the front, one attempt per key at a time, so a failing delivery
//!   holds the later ones of its key and no other. The queue is the truth and memory a cache
//!   of its heads: a restart (or a new leader) reads the heads again. One worker per database
//!   is assumed: the keys in flight live in memory.
//! - A consumer that is down costs one head per integration and at most
//!   `per_subscription_concurrency` slots, so it cannot starve the other subscriptions.

pub mod certificates;
pub mod heads;
pub mod relay;
pub mod signature;
pub mod target;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use connectors::ConnectorEnv;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::backoff::{Backoff, FullJitter, InvalidBackoff};
use crate::sinks as sink;
use crate::store::webhooks::Subscription;

/// The relay's name in `event_cursors`.
pub const CURSOR: &str = "webhooks";

/// The CloudEvents `type` of a test delivery (never stored in the outbox).
pub const TEST_EVENT_TYPE: &str = "dev.stellaops.webhook.test";

/// The `[events.webhooks]` settings. Every field has a default; see `examples/config.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Run the relay and the delivery worker (deliveries stay queued while off).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Deliveries in flight at once, over all subscriptions.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Deliveries in flight at once to one subscription, so a slow or dead consumer leaves
    /// slots for the others.
    #[serde(default = "default_per_subscription")]
    pub per_subscription_concurrency: usize,
    /// Longest one attempt may take, connection included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Smallest delay before a retry.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Largest delay before a retry (the ceiling doubles per failure up to this).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A delivery still failing this long after it was queued is dead-lettered, and the next
    /// one of its integration goes ahead.
    #[serde(default = "default_dead_letter_after")]
    pub dead_letter_after_seconds: u64,
    /// Outbox events read per relay transaction.
    #[serde(default = "default_relay_batch")]
    pub relay_batch: u64,
    /// How often the relay and the worker look for work without being woken.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the delivery worker reads every subscription's pending deliveries again in
    /// full (0: never). Between these it reads only rows newer than the last it saw, so this
    /// is what finds a row that became pending with an older id (committed late by another
    /// process, or put back by hand).
    #[serde(default = "default_resync_seconds")]
    pub resync_seconds: u64,
}

const fn default_true() -> bool {
    true
}
const fn default_concurrency() -> usize {
    32
}
const fn default_per_subscription() -> usize {
    8
}
const fn default_request_timeout_ms() -> u64 {
    10_000
}
const fn default_backoff_min_ms() -> u64 {
    1_000
}
const fn default_backoff_max_ms() -> u64 {
    300_000
}
const fn default_dead_letter_after() -> u64 {
    86_400
}
const fn default_relay_batch() -> u64 {
    500
}
const fn default_poll_interval_ms() -> u64 {
    1_000
}
const fn default_resync_seconds() -> u64 {
    300
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            concurrency: default_concurrency(),
            per_subscription_concurrency: default_per_subscription(),
            request_timeout_ms: default_request_timeout_ms(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            dead_letter_after_seconds: default_dead_letter_after(),
            relay_batch: default_relay_batch(),
            poll_interval_ms: default_poll_interval_ms(),
            resync_seconds: default_resync_seconds(),
        }
    }
}

/// Why the `[events.webhooks]` settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWebhookSettings {
    #[error("concurrency and per_subscription_concurrency must be at least 1")]
    ZeroConcurrency,
    #[error("request_timeout_ms, poll_interval_ms and relay_batch must be positive")]
    Zero,
    #[error("dead_letter_after_seconds must be positive")]
    ZeroDeadLetter,
    /// The settings' names, since the shared message speaks of delays in general.
    #[error("backoff_min_ms and backoff_max_ms: {0}")]
    Backoff(#[from] InvalidBackoff),
}

impl WebhookSettings {
    /// The retry backoff these settings describe.
    ///
    /// # Errors
    /// [`InvalidBackoff`].
    pub fn backoff(&self) -> Result<FullJitter, InvalidBackoff> {
        FullJitter::try_new(
            Duration::from_millis(self.backoff_min_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`InvalidWebhookSettings`] for the first bad one.
    pub fn validate(&self) -> Result<(), InvalidWebhookSettings> {
        if self.concurrency == 0 || self.per_subscription_concurrency == 0 {
            return Err(InvalidWebhookSettings::ZeroConcurrency);
        }
        if self.request_timeout_ms == 0 || self.poll_interval_ms == 0 || self.relay_batch == 0 {
            return Err(InvalidWebhookSettings::Zero);
        }
        if self.dead_letter_after_seconds == 0 {
            return Err(InvalidWebhookSettings::ZeroDeadLetter);
        }
        self.backoff()?;
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// How often the worker reads the whole queue again; `None` when never.
    pub fn resync_interval(&self) -> Option<Duration> {
        (self.resync_seconds > 0).then(|| Duration::from_secs(self.resync_seconds))
    }

    pub fn dead_letter_after(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.dead_letter_after_seconds.min(i64::MAX as u64) as i64)
    }
}

/// The relay's delays after database failures: from the poll interval, doubling, up to a
/// minute (the database is shared; hammering it helps nobody).
fn relay_backoff(poll: Duration) -> Backoff {
    let min = poll.max(Duration::from_millis(1));
    Backoff::try_new(min, min.max(RELAY_BACKOFF_MAX), 0.1).expect("a positive minimum")
}

/// Longest wait of the relay after repeated database failures.
const RELAY_BACKOFF_MAX: Duration = Duration::from_secs(60);

// === impl Webhooks ===

/// The running relay and delivery worker.
pub struct Webhooks {
    stop: watch::Sender<bool>,
    relay: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl Webhooks {
    /// Starts the relay (woken by `hub`) and the worker (sending through `env`'s guarded
    /// outbound client and resolving signing secrets with its resolver, and woken by the
    /// catalog's `changes` when a subscription changes or a delivery is put back in the
    /// queue). `None` when the settings turn webhooks off.
    ///
    /// # Errors
    /// [`InvalidWebhookSettings`].
    pub fn start(
        ctx: &sink::Context,
        settings: &WebhookSettings,
    ) -> Result<Option<Self>, InvalidWebhookSettings> {
        let sink::Context {
            store,
            env,
            hub,
            changes,
        } = ctx;
        settings.validate()?;
        if !settings.enabled {
            return Ok(None);
        }
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let relay = sink::spawn(
            relay::Relay {
                store: store.webhooks(),
                wake: wake.clone(),
                batch: settings.relay_batch,
                gate: hub.gate(),
            },
            sink::Drive {
                latest: Some(hub.channel_wake()),
                poll: settings.poll_interval(),
                backoff: relay_backoff(settings.poll_interval()),
                stop: stopped.clone(),
            },
        );
        let worker = tokio::spawn(
            worker::Worker::new(
                store.webhooks(),
                env.clone(),
                settings,
                wake,
                changes.follow(),
                stopped,
                certificates::TargetCertificates::new(
                    store.webhooks(),
                    hub.clone(),
                    env.outbound.certificate_warning(),
                ),
            )?
            .run(),
        );
        Ok(Some(Self {
            stop,
            relay,
            worker,
        }))
    }

    /// Stops both tasks: attempts in flight get a moment to finish and be recorded; any that
    /// do not are sent again after the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.relay.await;
        let _ = self.worker.await;
    }
}

#[async_trait::async_trait]
impl sink::Started for Webhooks {
    async fn stop(self: Box<Self>) {
        Webhooks::stop(*self).await;
    }
}

// === test deliveries ===

/// How a test delivery went.
#[derive(Debug, Clone)]
pub struct TestDelivery {
    pub event_id: Uuid,
    /// The target's status code, when it answered.
    pub status_code: Option<u16>,
    /// Why it was not delivered.
    pub error: Option<String>,
    pub latency_ms: u64,
}

impl TestDelivery {
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Sends one signed `dev.stellaops.webhook.test` event to a subscription now, outside the
/// queue, and reports what happened.
pub async fn send_test(
    env: &ConnectorEnv,
    settings: &WebhookSettings,
    subscription: &Subscription,
) -> TestDelivery {
    let event_id = Uuid::now_v7();
    let now = Utc::now();
    let event = json!({
        "specversion": "1.0",
        "id": event_id.to_string(),
        "source": format!("/tenants/{}/alert-subscriptions/{}", subscription.tenant_id, subscription.id),
        "type": TEST_EVENT_TYPE,
        "time": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "tenant": subscription.tenant_id,
        "data": {
            "subscriptionId": subscription.id.to_string(),
            "message": "A test delivery from StellaOps Integrations.",
        },
    });
    let started = tokio::time::Instant::now();
    let result = worker::sign_and_post(
        env,
        settings.request_timeout(),
        subscription.tenant_id.as_str(),
        &subscription.target_url,
        &subscription.secret_auth_ref_uri,
        target::Payload::Event(event_id),
        body_of(&event),
    )
    .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status_code, error) = match result.map(|reply| reply.answer) {
        Ok(target::Answer::Accepted(code)) => (Some(code), None),
        Ok(target::Answer::Refused { status, .. }) => (
            Some(status),
            Some(format!("the target answered HTTP {status}")),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    TestDelivery {
        event_id,
        status_code,
        error,
        latency_ms,
    }
}

/// A CloudEvent's JSON, as sent.
pub(crate) fn body_of(event: &Value) -> Vec<u8> {
    serde_json::to_vec(event).unwrap_or_default()
}

#[cfg(test)]
mod tests;
