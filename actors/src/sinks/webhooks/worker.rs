//! The delivery worker: takes what is due from the queue's heads in memory ([`Heads`]), sends
//! it concurrently (one attempt per (subscription, ordering key) at a time; a batched
//! subscription's attempt carries several keys' deliveries), and records the results in
//! batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::ConnectorEnv;
use connectors::authref::AuthRef;
use connectors::secrets::TenantRef;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use super::certificates::TargetCertificates;
use super::heads::{Heads, Job, Limits};
use super::target::{self, Answer, Payload, Reply, SendError};
use super::{InvalidWebhookSettings, WebhookSettings, body_of};
use crate::backoff::FullJitter;
use crate::catalog::Change;
use crate::events::metrics;
use crate::store::webhooks::{OutboxEvent, Outcome, Pending, WebhookStore};

/// How long attempts in flight get to finish at shutdown before they are abandoned (and sent
/// again after the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest pause between tries to record results while the database is failing.
const MAX_RECORD_DELAY: Duration = Duration::from_secs(10);

/// How often the backlog metrics are brought up to date.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// What a finished attempt reports.
struct Done {
    job: Job,
    outcomes: Vec<Outcome>,
}

pub struct Worker {
    store: WebhookStore,
    env: ConnectorEnv,
    concurrency: usize,
    per_subscription: usize,
    timeout: Duration,
    poll: Duration,
    /// How often the heads are read again in full.
    resync: Option<Duration>,
    backoff: FullJitter,
    dead_after: chrono::Duration,
    wake: Arc<Notify>,
    changes: UnboundedReceiver<Change>,
    stop: watch::Receiver<bool>,
    heads: Heads,
    tasks: JoinSet<Done>,
    /// The job of each running task, so a panicking attempt still frees its keys.
    task_jobs: HashMap<Id, Job>,
    certificates: TargetCertificates,
}

impl Worker {
    /// # Errors
    /// [`InvalidWebhookSettings`].
    pub fn new(
        store: WebhookStore,
        env: ConnectorEnv,
        settings: &WebhookSettings,
        wake: Arc<Notify>,
        changes: UnboundedReceiver<Change>,
        stop: watch::Receiver<bool>,
        certificates: TargetCertificates,
    ) -> Result<Self, InvalidWebhookSettings> {
        settings.validate()?;
        Ok(Self {
            store,
            env,
            concurrency: settings.concurrency,
            per_subscription: settings.per_subscription_concurrency,
            timeout: settings.request_timeout(),
            poll: settings.poll_interval(),
            resync: settings.resync_interval(),
            backoff: settings.backoff()?,
            dead_after: settings.dead_letter_after(),
            wake,
            changes,
            stop,
            heads: Heads::new(Limits::default()),
            tasks: JoinSet::new(),
            task_jobs: HashMap::new(),
            certificates,
        })
    }

    pub async fn run(mut self) {
        // `refill`: read the database (new rows, changed subscriptions); `take`: start what is
        // due from memory.
        let mut refill = true;
        let mut take = true;
        let mut next_look = tokio::time::Instant::now() + self.poll;
        let mut backlog_at = tokio::time::Instant::now();
        // The first refill reads everything anyway.
        let mut resync_at = self.resync.map(|every| tokio::time::Instant::now() + every);
        loop {
            if *self.stop.borrow() {
                break;
            }
            if let Some(at) = resync_at
                && tokio::time::Instant::now() >= at
            {
                self.heads.resync();
                refill = true;
                resync_at = self.resync.map(|every| tokio::time::Instant::now() + every);
            }
            if refill {
                match self.heads.refill(&self.store).await {
                    Ok(()) => refill = self.heads.more(),
                    Err(error) => {
                        tracing::warn!(message = "Reading the webhook queue failed.", %error);
                        refill = false;
                        next_look = tokio::time::Instant::now() + self.poll;
                    }
                }
                take = true;
            }
            if take && self.tasks.len() < self.concurrency {
                next_look = match self.fill().await {
                    Ok(next) => next.min(tokio::time::Instant::now() + self.poll),
                    Err(error) => {
                        tracing::warn!(message = "Reading the outbox for webhooks failed.", %error);
                        tokio::time::Instant::now() + self.poll
                    }
                };
                take = false;
            }
            if tokio::time::Instant::now() >= backlog_at {
                backlog::publish(self.heads.backlog());
                backlog_at = tokio::time::Instant::now() + BACKLOG_EVERY;
            }
            if refill {
                // More of a big backlog to read: go on after what is due has started.
                continue;
            }
            tokio::select! {
                changed = self.stop.changed() => if changed.is_err() { break },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let mut done = vec![self.done(joined)];
                    while let Some(joined) = self.tasks.try_join_next_with_id() {
                        done.push(self.done(joined));
                    }
                    self.record(done.into_iter().flatten().collect()).await;
                    take = true;
                    refill = self.heads.wants_refill();
                }
                Some(change) = self.changes.recv() => {
                    if let Some(subscription) = subscription_of(&change) {
                        self.heads.invalidate(subscription);
                        while let Ok(change) = self.changes.try_recv() {
                            if let Some(subscription) = subscription_of(&change) {
                                self.heads.invalidate(subscription);
                            }
                        }
                        refill = true;
                    }
                }
                _ = self.wake.notified() => refill = true,
                _ = tokio::time::sleep_until(next_look) => { refill = true; take = true; }
            }
        }
        self.drain().await;
        backlog::publish(Vec::new());
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
        let outcomes: Vec<Outcome> = done.into_iter().flat_map(|d| d.outcomes).collect();
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
                self.task_jobs.remove(&id);
                Some(done)
            }
            Err(e) => {
                // A panicking attempt: free its keys; its deliveries stay pending and are
                // retried.
                if let Some(job) = self.task_jobs.remove(&e.id()) {
                    tracing::error!(
                        message = "A webhook attempt panicked.",
                        delivery_id = job.rows.first().map_or(0, |r| r.id),
                        deliveries = job.rows.len(),
                    );
                    self.heads.finish(&job, None);
                }
                None
            }
        }
    }

    /// Records results (retrying while the database fails, so no key is freed before its
    /// result is stored: freeing it early could send the same head twice), then frees keys.
    async fn record(&mut self, done: Vec<Done>) {
        let outcomes: Vec<Outcome> = done.iter().flat_map(|d| d.outcomes.clone()).collect();
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
            self.heads.finish(&d.job, Some(&d.outcomes));
        }
    }

    /// Starts what is due with a free slot; returns when to look again.
    async fn fill(&mut self) -> Result<tokio::time::Instant, sea_orm::DbErr> {
        let free = self.concurrency.saturating_sub(self.tasks.len());
        let (jobs, next) = self.heads.take(Utc::now(), free, self.per_subscription);
        if !jobs.is_empty() {
            let seqs: Vec<i64> = jobs
                .iter()
                .flat_map(|j| j.rows.iter().map(|r| r.event_seq))
                .collect();
            // Several subscriptions' deliveries can be of the same event.
            let events = match self.store.outbox_events(&seqs).await {
                Ok(events) => events,
                Err(error) => {
                    for job in &jobs {
                        self.heads.finish(job, None);
                    }
                    return Err(error);
                }
            };
            for job in jobs {
                let payloads = job
                    .rows
                    .iter()
                    .map(|r| events.get(&r.event_seq).cloned())
                    .collect();
                self.spawn(job, payloads);
            }
        }
        let wait = next
            .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(self.poll);
        Ok(tokio::time::Instant::now() + wait)
    }

    fn spawn(&mut self, job: Job, events: Vec<Option<OutboxEvent>>) {
        let attempt = Attempt {
            env: self.env.clone(),
            timeout: self.timeout,
            backoff: self.backoff,
            dead_after: self.dead_after,
            certificates: self.certificates.clone(),
        };
        let task_job = job.clone();
        let handle = self.tasks.spawn(async move {
            let outcomes = attempt.run(&job, events).await;
            Done { job, outcomes }
        });
        self.task_jobs.insert(handle.id(), task_job);
    }
}

/// The subscription whose queue a catalog change touches.
fn subscription_of(change: &Change) -> Option<Uuid> {
    match change {
        Change::SubscriptionChanged { id, .. } => Some(*id),
        Change::DeliveryRequeued {
            subscription_id, ..
        } => Some(*subscription_id),
        _ => None,
    }
}

/// One attempt, run in its own task.
struct Attempt {
    env: ConnectorEnv,
    timeout: Duration,
    backoff: FullJitter,
    dead_after: chrono::Duration,
    certificates: TargetCertificates,
}

impl Attempt {
    /// Sends a job (one event, or a batch) and says how each of its deliveries ended. An
    /// event pruned from the outbox meanwhile is dead; a batch goes out without it.
    async fn run(self, job: &Job, events: Vec<Option<OutboxEvent>>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(job.rows.len());
        let mut sending: Vec<(&Pending, OutboxEvent)> = Vec::with_capacity(job.rows.len());
        for (row, event) in job.rows.iter().zip(events) {
            match event {
                Some(event) => sending.push((row, event)),
                None => {
                    metrics::delivery("dead");
                    outcomes.push(Outcome::Dead {
                        id: row.id,
                        status_code: None,
                        error: "the event is no longer in the outbox".into(),
                        at: Utc::now(),
                    });
                }
            }
        }
        if sending.is_empty() {
            return outcomes;
        }
        let target = &job.target;
        let (payload, body) = match (target.batch, sending.as_slice()) {
            (None, [(row, event)]) => (Payload::Event(row.event_id), body_of(&event.payload)),
            _ => (
                Payload::Batch(sending.len()),
                batch_body(sending.iter().map(|(_, e)| &e.payload)),
            ),
        };
        // The delivery's span: its trace goes to the receiver as `traceparent`.
        let (first, _) = sending[0];
        let span = tracing::info_span!(
            "webhook_delivery",
            tenant_id = %target.tenant_id,
            subscription_id = %first.subscription_id,
            event_id = %first.event_id,
            events = sending.len(),
            attempt = first.attempts + 1,
        );
        let result = sign_and_post(
            &self.env,
            self.timeout,
            &target.tenant_id,
            &target.target_url,
            &target.secret_auth_ref_uri,
            payload,
            body,
        )
        .instrument(span)
        .await;
        let at = Utc::now();
        if let Ok(Reply {
            certificate: Some(certificate),
            ..
        }) = &result
        {
            let subscription = first.subscription_id;
            self.certificates
                .observe(subscription, &target.target_url, *certificate, at)
                .await;
        }
        match result.map(|reply| reply.answer) {
            Ok(Answer::Accepted(code)) => {
                for (row, event) in sending {
                    metrics::delivery("delivered");
                    let delay = (at - event.time).num_microseconds().unwrap_or(i64::MAX);
                    metrics::delivery_delay(delay as f64 / 1_000_000.0);
                    outcomes.push(Outcome::Delivered {
                        id: row.id,
                        status_code: code,
                        at,
                    });
                }
            }
            Ok(Answer::Refused {
                status,
                retry_after,
            }) => {
                for (row, _) in sending {
                    outcomes.push(self.failed(
                        job,
                        row,
                        at,
                        Some(status),
                        format!("the target answered HTTP {status}"),
                        retry_after,
                    ));
                }
            }
            Err(e) => {
                let retry_after = e.retry_after();
                let error = e.to_string();
                for (row, _) in sending {
                    outcomes.push(self.failed(job, row, at, None, error.clone(), retry_after));
                }
            }
        }
        outcomes
    }

    /// A failed attempt: dead once past the dead-letter time, else retried after the backoff
    /// (or the pause the target asked for, if longer), never later than the dead-letter time
    /// so that the last attempt falls on it.
    fn failed(
        &self,
        job: &Job,
        head: &Pending,
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
                tenant_id = %job.target.tenant_id,
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
/// the body (one event, or a batch), signed.
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
    payload: Payload,
    body: Vec<u8>,
) -> Result<Reply, SendError> {
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
        payload,
        timestamp,
        body,
    )
    .await
}

/// A CloudEvents JSON batch: the events' structured JSON as one array, in order.
pub(crate) fn batch_body<'a>(events: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let mut body = vec![b'['];
    for (i, event) in events.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend(body_of(event));
    }
    body.push(b']');
    body
}

/// `integration_webhook_backlog_oldest_seconds` and `integration_webhook_backlog`, one series
/// per subscription the worker delivers to (so as many series as subscriptions), from the
/// worker's memory: no query.
mod backlog {
    use std::sync::{Mutex, OnceLock};

    use chrono::Utc;
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::ObservableGauge;

    use super::super::heads::Backlog;

    static LATEST: Mutex<Vec<Backlog>> = Mutex::new(Vec::new());

    fn labels(b: &Backlog) -> [KeyValue; 1] {
        [KeyValue::new("subscription", b.subscription_id.to_string())]
    }

    fn gauges() -> &'static [ObservableGauge<f64>; 2] {
        static GAUGES: OnceLock<[ObservableGauge<f64>; 2]> = OnceLock::new();
        GAUGES.get_or_init(|| {
            let meter = opentelemetry::global::meter("stella-integrations");
            [
                meter
                    .f64_observable_gauge("integration_webhook_backlog_oldest_seconds")
                    .with_description(
                        "Age of the oldest pending webhook delivery, per subscription, in seconds (0 when none is pending).",
                    )
                    .with_callback(|observer| {
                        let now = Utc::now();
                        for b in LATEST.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            let age = b.oldest.map_or(0.0, |t| {
                                (now - t).num_milliseconds().max(0) as f64 / 1000.0
                            });
                            observer.observe(age, &labels(b));
                        }
                    })
                    .build(),
                meter
                    .f64_observable_gauge("integration_webhook_backlog")
                    .with_description("Pending webhook deliveries, per subscription.")
                    .with_callback(|observer| {
                        for b in LATEST.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            observer.observe(b.pending as f64, &labels(b));
                        }
                    })
                    .build(),
            ]
        })
    }

    /// Replaces what the gauges report (empty when the worker stops).
    pub(super) fn publish(backlog: Vec<Backlog>) {
        gauges();
        *LATEST.lock().unwrap_or_else(|e| e.into_inner()) = backlog;
    }
}
