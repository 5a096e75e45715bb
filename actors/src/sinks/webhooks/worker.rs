//! The delivery worker: picks the heads of the queue, sends them concurrently (one per
//! (subscription, ordering key) at a time), and records the results in batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::ConnectorEnv;
use connectors::authref::AuthRef;
use connectors::secrets::TenantRef;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use super::target::{self, Answer, SendError};
use super::{InvalidWebhookSettings, WebhookSettings, body_of};
use crate::backoff::FullJitter;
use crate::events::metrics;
use crate::store::webhooks::{Head, OutboxEvent, Outcome, WebhookStore};

/// Deliveries of one key go out one at a time, in queue order.
type Key = (Uuid, Uuid);

/// How long attempts in flight get to finish at shutdown before they are abandoned (and sent
/// again after the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest pause between tries to record results while the database is failing.
const MAX_RECORD_DELAY: Duration = Duration::from_secs(10);

/// What a finished attempt reports.
struct Done {
    key: Key,
    outcome: Outcome,
}

pub struct Worker {
    store: WebhookStore,
    env: ConnectorEnv,
    concurrency: usize,
    per_subscription: usize,
    timeout: Duration,
    poll: Duration,
    backoff: FullJitter,
    dead_after: chrono::Duration,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    /// Keys with an attempt in flight (or finished and not yet recorded).
    busy: HashSet<Key>,
    /// Attempts in flight (or unrecorded) per subscription.
    per_sub: HashMap<Uuid, usize>,
    tasks: JoinSet<Done>,
    /// The key of each running task, so a panicking attempt still frees its key.
    task_keys: HashMap<Id, (Key, i64)>,
}

impl Worker {
    /// # Errors
    /// [`InvalidWebhookSettings`].
    pub fn new(
        store: WebhookStore,
        env: ConnectorEnv,
        settings: &WebhookSettings,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, InvalidWebhookSettings> {
        settings.validate()?;
        Ok(Self {
            store,
            env,
            concurrency: settings.concurrency,
            per_subscription: settings.per_subscription_concurrency,
            timeout: settings.request_timeout(),
            poll: settings.poll_interval(),
            backoff: settings.backoff()?,
            dead_after: settings.dead_letter_after(),
            wake,
            stop,
            busy: HashSet::new(),
            per_sub: HashMap::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
        })
    }

    pub async fn run(mut self) {
        let mut look = true;
        let mut next_look = tokio::time::Instant::now() + self.poll;
        loop {
            if *self.stop.borrow() {
                break;
            }
            if look && self.tasks.len() < self.concurrency {
                next_look = match self.fill().await {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::warn!(message = "Reading the webhook queue failed.", %error);
                        tokio::time::Instant::now() + self.poll
                    }
                };
                look = false;
            }
            tokio::select! {
                changed = self.stop.changed() => if changed.is_err() { break },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let mut done = vec![self.done(joined)];
                    while let Some(joined) = self.tasks.try_join_next_with_id() {
                        done.push(self.done(joined));
                    }
                    self.record(done.into_iter().flatten().collect()).await;
                    look = true;
                }
                _ = self.wake.notified() => look = true,
                _ = tokio::time::sleep_until(next_look) => look = true,
            }
        }
        self.drain().await;
    }

    /// At shutdown: waits a moment for attempts in flight, records what finished, abandons
    /// the rest (they are still pending, so the next start sends them again).
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut done = Vec::new();
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => done.extend(self.done(joined)),
                Ok(None) | Err(_) => break,
            }
        }
        self.tasks.abort_all();
        let outcomes: Vec<Outcome> = done.into_iter().map(|d| d.outcome).collect();
        if let Err(error) = self.store.record(&outcomes).await {
            tracing::warn!(
                message = "Recording webhook results at shutdown failed; they will be sent again.",
                %error,
            );
        }
    }

    fn done(&mut self, joined: Result<(Id, Done), tokio::task::JoinError>) -> Option<Done> {
        match joined {
            Ok((id, done)) => {
                self.task_keys.remove(&id);
                Some(done)
            }
            Err(e) => {
                // A panicking attempt: free its key; the delivery stays pending and is retried.
                if let Some((key, delivery)) = self.task_keys.remove(&e.id()) {
                    tracing::error!(
                        message = "A webhook attempt panicked.",
                        delivery_id = delivery
                    );
                    self.release(key);
                }
                None
            }
        }
    }

    fn release(&mut self, key: Key) {
        self.busy.remove(&key);
        if let Some(n) = self.per_sub.get_mut(&key.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_sub.remove(&key.0);
            }
        }
    }

    /// Records results (retrying while the database fails, so no key is freed before its
    /// result is stored: freeing it early could send the same head twice), then frees keys.
    async fn record(&mut self, done: Vec<Done>) {
        let outcomes: Vec<Outcome> = done.iter().map(|d| d.outcome.clone()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store.record(&outcomes).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(
                        message = "Recording webhook results failed; retrying.",
                        results = outcomes.len(),
                        %error,
                    );
                    tokio::select! {
                        _ = self.stop.changed() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RECORD_DELAY);
                }
            }
        }
        for d in done {
            self.release(d.key);
        }
    }

    /// Starts attempts for the due heads that have a free slot; returns when to look again.
    async fn fill(&mut self) -> Result<tokio::time::Instant, sea_orm::DbErr> {
        let free = self.concurrency.saturating_sub(self.tasks.len());
        let limit = (self.busy.len() + 2 * free) as u64;
        let heads = self
            .store
            .heads(self.per_subscription as u64, limit)
            .await?;
        let now = Utc::now();
        let mut next = now + chrono::Duration::from_std(self.poll).unwrap_or_default();
        let mut due = Vec::new();
        let mut planned: HashMap<Uuid, usize> = HashMap::new();
        for head in heads {
            let key = (head.subscription_id, head.ordering_key);
            if self.busy.contains(&key) {
                continue;
            }
            if head.next_attempt_at > now {
                next = next.min(head.next_attempt_at);
                continue;
            }
            let sub_load = self
                .per_sub
                .get(&head.subscription_id)
                .copied()
                .unwrap_or(0)
                + planned.get(&head.subscription_id).copied().unwrap_or(0);
            if due.len() >= free || sub_load >= self.per_subscription {
                continue;
            }
            *planned.entry(head.subscription_id).or_default() += 1;
            due.push(head);
        }
        if !due.is_empty() {
            let seqs: Vec<i64> = due.iter().map(|h| h.event_seq).collect();
            // Several subscriptions' heads can be the same event.
            let events = self.store.outbox_events(&seqs).await?;
            for head in due {
                let event = events.get(&head.event_seq).cloned();
                self.spawn(head, event);
            }
        }
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        Ok(tokio::time::Instant::now() + wait)
    }

    fn spawn(&mut self, head: Head, event: Option<OutboxEvent>) {
        let key = (head.subscription_id, head.ordering_key);
        self.busy.insert(key);
        *self.per_sub.entry(head.subscription_id).or_default() += 1;
        let delivery = head.id;
        let attempt = Attempt {
            env: self.env.clone(),
            timeout: self.timeout,
            backoff: self.backoff,
            dead_after: self.dead_after,
        };
        let handle = self.tasks.spawn(async move {
            let outcome = attempt.run(head, event).await;
            Done { key, outcome }
        });
        self.task_keys.insert(handle.id(), (key, delivery));
    }
}

/// One attempt, run in its own task.
struct Attempt {
    env: ConnectorEnv,
    timeout: Duration,
    backoff: FullJitter,
    dead_after: chrono::Duration,
}

impl Attempt {
    async fn run(self, head: Head, event: Option<OutboxEvent>) -> Outcome {
        let Some(event) = event else {
            let at = Utc::now();
            metrics::delivery("dead");
            return Outcome::Dead {
                id: head.id,
                status_code: None,
                error: "the event is no longer in the outbox".into(),
                at,
            };
        };
        // The delivery's span: its trace goes to the receiver as `traceparent`.
        let span = tracing::info_span!(
            "webhook_delivery",
            tenant_id = %head.tenant_id,
            subscription_id = %head.subscription_id,
            event_id = %head.event_id,
            attempt = head.attempts + 1,
        );
        let result = sign_and_post(
            &self.env,
            self.timeout,
            &head.tenant_id,
            &head.target_url,
            &head.secret_auth_ref_uri,
            head.event_id,
            &event.payload,
        )
        .instrument(span)
        .await;
        let at = Utc::now();
        match result {
            Ok(Answer::Accepted(code)) => {
                metrics::delivery("delivered");
                let delay = (at - event.time).num_microseconds().unwrap_or(i64::MAX);
                metrics::delivery_delay(delay as f64 / 1_000_000.0);
                Outcome::Delivered {
                    id: head.id,
                    status_code: code,
                    at,
                }
            }
            Ok(Answer::Refused {
                status,
                retry_after,
            }) => self.failed(
                &head,
                at,
                Some(status),
                format!("the target answered HTTP {status}"),
                retry_after,
            ),
            Err(e) => {
                let retry_after = e.retry_after();
                self.failed(&head, at, None, e.to_string(), retry_after)
            }
        }
    }

    /// A failed attempt: dead once past the dead-letter time, else retried after the backoff
    /// (or the pause the target asked for, if longer), never later than the dead-letter time
    /// so that the last attempt falls on it.
    fn failed(
        &self,
        head: &Head,
        at: DateTime<Utc>,
        status_code: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let deadline = head.queued_at + self.dead_after;
        if at >= deadline {
            metrics::delivery("dead");
            tracing::warn!(
                message = "Webhook delivery dead-lettered.",
                tenant_id = %head.tenant_id,
                subscription_id = %head.subscription_id,
                delivery_id = head.id,
                event_id = %head.event_id,
                attempts = head.attempts + 1,
                %error,
            );
            return Outcome::Dead {
                id: head.id,
                status_code,
                error,
                at,
            };
        }
        metrics::delivery("failed");
        let failure = u32::try_from(head.attempts).unwrap_or(0);
        let mut wait = self.backoff.delay(failure, rand::random::<f64>());
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(self.backoff.max()));
        }
        let next = (at + chrono::Duration::from_std(wait).unwrap_or_default()).min(deadline);
        tracing::debug!(
            message = "Webhook delivery failed; will retry.",
            subscription_id = %head.subscription_id,
            delivery_id = head.id,
            attempts = head.attempts + 1,
            %error,
            retry_in_ms = (next - at).num_milliseconds(),
        );
        Outcome::Retry {
            id: head.id,
            status_code,
            error,
            at,
            next_attempt_at: next,
        }
    }
}

/// Resolves the signing secret (at use time, never stored) inside the subscription's
/// tenant's namespace, checks that the secret may be used for the target's host, and POSTs
/// the event.
///
/// # Errors
/// [`SendError`] when no HTTP answer came, or the secret is outside the tenant's namespace or
/// bound to other hosts (then nothing is sent).
pub(crate) async fn sign_and_post(
    env: &ConnectorEnv,
    timeout: Duration,
    tenant: &str,
    url: &str,
    secret_auth_ref_uri: &str,
    event_id: Uuid,
    event: &Value,
) -> Result<Answer, SendError> {
    let reference: AuthRef = secret_auth_ref_uri
        .parse()
        .map_err(|_| SendError::BadSecretRef)?;
    let reference = TenantRef::new(tenant, reference);
    let resolved = env.secrets.resolve(&reference).await?;
    let target = url::Url::parse(url).map_err(|_| SendError::BadUrl)?;
    let secret = resolved.for_url(&reference, &target)?;
    let timestamp = Utc::now().timestamp();
    target::post(
        &env.outbound,
        timeout,
        url,
        secret,
        event_id,
        timestamp,
        body_of(event),
    )
    .await
}
