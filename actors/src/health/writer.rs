//! The batching writer: every check result and status transition of every monitor goes
//! through one bounded queue into one transaction per batch (on PostgreSQL one statement per
//! table, the rows bound as arrays; see `store::health::bulk`).
//!
//! A burst of 10k results is a handful of round trips, not 10k. When the database is slow the
//! queue fills and monitors wait on `record` (back-pressure); when it is down the current batch
//! is retried with backoff until it lands, so nothing is lost while the queue holds.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cluster::ClusterView;
use crate::events::NewEvent;
use crate::events::alerts::{
    AlertSettings, Alerts, CredentialNotice, MaintenanceChange, Transition,
};
use crate::events::clock::Clock;
use crate::events::hub::EventHub;
use crate::store::cluster::Fence;
use crate::store::health::{CheckRow, StatusRow};
use crate::store::{Store, SystemStore};

/// One thing to write, or to tell the alert policy.
#[derive(Debug)]
pub enum WriteOp {
    /// A check result, and what it told about the credential.
    Check(CheckRow, Option<Box<CredentialNotice>>),
    /// A status change: stored on the integration's row, with the events it gives.
    Status(Box<Transition>),
    /// Answered once everything queued before it, and every time-driven event due by now, is
    /// written: an on-demand check replies after its result is readable.
    Flush(oneshot::Sender<()>),
    /// An integration that was unhealthy or in error at start-up, so reminders go on.
    Seed(Box<Transition>),
    /// The integration's external plugin keeps failing: one event, no status change.
    PluginCrashLoop(Box<Transition>),
    /// A deleted integration: forget its alert state.
    Forget(uuid::Uuid),
    Maintenance(MaintenanceChange),
    /// An event decided outside the health engine (an API key about to expire), appended to
    /// the outbox in order with the others.
    Event(Box<NewEvent>),
}

/// How the writer batches, and how it turns status changes into events.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    pub batch: usize,
    pub flush: Duration,
    pub buffer: usize,
    pub alerts: AlertSettings,
    /// Committed events are published here.
    pub hub: EventHub,
    pub clock: Clock,
    /// How often time-driven events (reminders, end of flapping or maintenance) are looked for.
    pub tick: Duration,
    /// In a cluster: rows are written only under the shard leases this replica holds.
    pub cluster: Option<ClusterView>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            flush: Duration::from_millis(50),
            buffer: 20_000,
            alerts: AlertSettings::default(),
            hub: EventHub::default(),
            clock: Clock::System,
            tick: Duration::from_secs(1),
            cluster: None,
        }
    }
}

/// Where monitors send their results. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ResultWriter {
    tx: mpsc::Sender<WriteOp>,
}

/// Longest pause between two attempts at a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

impl ResultWriter {
    /// Starts the writer task. It ends, after writing what is queued, once every
    /// `ResultWriter` clone is dropped.
    pub fn spawn(store: Store, options: WriterOptions) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(options.buffer.max(1));
        // Weak, so that the metric does not keep the writer running.
        let watched = tx.downgrade();
        crate::health::metrics::watch_writer(move || {
            watched.upgrade().map_or(0, |tx| Self::queue_depth(&tx))
        });
        let task = tokio::spawn(run(store, rx, options));
        (Self { tx }, task)
    }

    /// Queues a write, waiting while the queue is full.
    pub async fn record(&self, op: WriteOp) {
        if self.tx.send(op).await.is_err() {
            tracing::warn!(message = "The result writer has stopped; a result was dropped.");
        }
    }

    /// Results queued and not yet written.
    pub fn queued(&self) -> usize {
        Self::queue_depth(&self.tx)
    }

    fn queue_depth(tx: &mpsc::Sender<WriteOp>) -> usize {
        tx.max_capacity() - tx.capacity()
    }
}

/// What one transaction writes.
#[derive(Default)]
struct Batch {
    checks: Vec<CheckRow>,
    statuses: Vec<StatusRow>,
    events: Vec<NewEvent>,
    waiters: Vec<oneshot::Sender<()>>,
    /// In a cluster: the lease each integration's rows are written under.
    fence: Option<Fence>,
}

impl Batch {
    fn len(&self) -> usize {
        self.checks.len() + self.statuses.len() + self.events.len()
    }

    /// Stamps an integration's rows with the lease it is owned under now; `false` when this
    /// replica does not own it (any more), and its rows are dropped.
    fn owned(&mut self, cluster: Option<&ClusterView>, integration: uuid::Uuid) -> bool {
        let (Some(cluster), Some(fence)) = (cluster, self.fence.as_mut()) else {
            return true;
        };
        match cluster.stamp(integration) {
            Some(stamp) => {
                fence.stamps.insert(integration, stamp);
                true
            }
            None => {
                crate::health::metrics::fenced(1);
                false
            }
        }
    }

    fn push(&mut self, op: WriteOp, alerts: &mut Alerts, cluster: Option<&ClusterView>) {
        let integration = match &op {
            WriteOp::Check(row, _) => Some(row.integration_id),
            WriteOp::Status(t) | WriteOp::PluginCrashLoop(t) => Some(t.integration_id),
            _ => None,
        };
        if integration.is_some_and(|id| !self.owned(cluster, id)) {
            return;
        }
        match op {
            WriteOp::Check(row, credential) => {
                self.checks.push(row);
                if let Some(notice) = credential {
                    let at = row_time(&self.checks);
                    self.events.extend(alerts.on_credential(&notice, at));
                }
            }
            WriteOp::Status(t) => {
                self.statuses.push(StatusRow {
                    integration_id: t.integration_id,
                    status: t.to.as_str(),
                    reason: t.reason,
                    checked_at: t.checked_at,
                });
                // Decided at the time of the check, however long the op waited in the queue.
                self.events.extend(alerts.on_transition(&t, t.checked_at));
            }
            WriteOp::Flush(w) => self.waiters.push(w),
            WriteOp::Seed(t) => alerts.seed(
                t.integration_id,
                t.tenant.clone(),
                t.provider_type.clone(),
                t.to,
                t.checked_at,
            ),
            WriteOp::PluginCrashLoop(t) => {
                self.events
                    .extend(alerts.on_plugin_crash_loop(&t, t.checked_at));
            }
            WriteOp::Forget(id) => alerts.forget(id),
            WriteOp::Maintenance(change) => alerts.maintenance(change),
            WriteOp::Event(event) => self.events.push(*event),
        }
    }
}

fn row_time(checks: &[CheckRow]) -> chrono::DateTime<chrono::Utc> {
    checks
        .last()
        .map_or_else(chrono::Utc::now, |c| c.checked_at)
}

async fn run(store: Store, mut rx: mpsc::Receiver<WriteOp>, options: WriterOptions) {
    let system = store.system();
    let mut alerts = Alerts::new(options.alerts.clone());
    let clock = options.clock;
    let batch_size = options.batch.max(1);
    let cluster = options.cluster.as_ref();
    let mut batch = Batch {
        fence: cluster.map(|c| Fence {
            replica: c.replica.clone(),
            stamps: Default::default(),
        }),
        ..Batch::default()
    };
    let mut ticker = tokio::time::interval(options.tick.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Wait for the first op (or a tick), then fill the batch until it is full, `flush`
        // has passed, or somebody waits for it.
        tokio::select! {
            // Queued ops first: a tick must not judge state that is still in the queue.
            biased;
            op = rx.recv() => match op {
                Some(op) => batch.push(op, &mut alerts, cluster),
                None => break,
            },
            _ = ticker.tick() => {
                batch.events.extend(alerts.tick(clock.now()));
                if batch.len() == 0 {
                    continue;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + options.flush;
        while batch.len() < batch_size && batch.waiters.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(op)) => batch.push(op, &mut alerts, cluster),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.waiters.is_empty() {
            // A flush also brings time-driven events up to now.
            batch.events.extend(alerts.tick(clock.now()));
        }
        write(&system, &mut batch, &options.hub).await;
    }
    write(&system, &mut batch, &options.hub).await;
}

async fn write(system: &SystemStore, batch: &mut Batch, hub: &EventHub) {
    if batch.len() > 0 {
        let mut delay = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        let stored = loop {
            match system
                .write_results_fenced(
                    &batch.checks,
                    &batch.statuses,
                    &batch.events,
                    batch.fence.as_ref(),
                )
                .await
            {
                Ok(stored) => break stored,
                Err(error) => {
                    tracing::warn!(
                        message = "Writing health results failed; retrying.",
                        results = batch.checks.len(),
                        events = batch.events.len(),
                        %error,
                        waited_ms = started.elapsed().as_millis() as u64,
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        };
        crate::health::metrics::writer_batch(
            batch.checks.len() + batch.statuses.len(),
            started.elapsed(),
        );
        crate::events::metrics::events_written(stored.len());
        hub.publish(stored);
        batch.checks.clear();
        batch.statuses.clear();
        batch.events.clear();
        if let Some(fence) = &mut batch.fence {
            fence.stamps.clear();
        }
    }
    for waiter in batch.waiters.drain(..) {
        let _ = waiter.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use chrono::Utc;
    use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
    use uuid::Uuid;

    fn check(id: Uuid) -> WriteOp {
        WriteOp::Check(
            CheckRow {
                integration_id: id,
                tenant_id: "t".into(),
                checked_at: Utc::now(),
                status: "healthy",
                reason: None,
                latency_ms: 1,
                error_message: None,
                folded: None,
            },
            None,
        )
    }

    fn options(batch: usize, flush_ms: u64, buffer: usize) -> WriterOptions {
        WriterOptions {
            batch,
            flush: Duration::from_millis(flush_ms),
            buffer,
            ..WriterOptions::default()
        }
    }

    #[tokio::test]
    async fn a_burst_is_written_in_few_batches_and_nothing_is_lost() {
        let store = testing::store().await;
        let (writer, task) = ResultWriter::spawn(store.clone(), options(500, 50, 20_000));
        let id = Uuid::now_v7();
        for _ in 0..10_000 {
            writer.record(check(id)).await;
        }
        drop(writer);
        task.await.unwrap();
        let txn = store.system().begin().await.unwrap();
        let stored = entity::health_check::Entity::find()
            .count(&txn)
            .await
            .unwrap();
        assert_eq!(stored, 10_000);
    }

    #[tokio::test]
    async fn a_database_outage_delays_results_without_losing_them() {
        let store = testing::store().await;
        // Make every insert fail by renaming the table, then bring it back.
        store
            .db
            .execute_unprepared("ALTER TABLE health_checks RENAME TO health_checks_away")
            .await
            .unwrap();
        let (writer, task) = ResultWriter::spawn(store.clone(), options(100, 10, 1_000));
        let id = Uuid::now_v7();
        for _ in 0..250 {
            writer.record(check(id)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        store
            .db
            .execute_unprepared("ALTER TABLE health_checks_away RENAME TO health_checks")
            .await
            .unwrap();
        drop(writer);
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
        let txn = store.system().begin().await.unwrap();
        let stored = entity::health_check::Entity::find()
            .count(&txn)
            .await
            .unwrap();
        assert_eq!(stored, 250);
    }
}
