//! The batching writer: every check result and status transition of every monitor goes
//! through one bounded queue into multi-row INSERTs.
//!
//! A burst of 10k results is a handful of round trips, not 10k. When the database is slow the
//! queue fills and monitors wait on `record` (back-pressure); when it is down the current batch
//! is retried with backoff until it lands, so nothing is lost while the queue holds.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::Store;
use crate::store::health::{CheckRow, StatusRow};

/// One thing to write.
#[derive(Debug)]
pub enum WriteOp {
    Check(CheckRow),
    Status(StatusRow),
    /// Answered once everything queued before it is written: an on-demand check replies after
    /// its result is readable.
    Flush(oneshot::Sender<()>),
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
    pub fn spawn(
        store: Store,
        batch: usize,
        flush: Duration,
        buffer: usize,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let task = tokio::spawn(run(store, rx, batch.max(1), flush));
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
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<WriteOp>, batch: usize, flush: Duration) {
    let system = store.system();
    let mut checks = Vec::with_capacity(batch);
    let mut statuses = Vec::new();
    let mut waiters = Vec::new();
    loop {
        // Wait for the first op, then fill the batch until it is full, `flush` has passed, or
        // somebody waits for it.
        let Some(first) = rx.recv().await else { break };
        push(first, &mut checks, &mut statuses, &mut waiters);
        let deadline = tokio::time::Instant::now() + flush;
        while checks.len() + statuses.len() < batch && waiters.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(op)) => push(op, &mut checks, &mut statuses, &mut waiters),
                Ok(None) | Err(_) => break,
            }
        }
        write(&system, &mut checks, &mut statuses).await;
        for waiter in waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
    write(&system, &mut checks, &mut statuses).await;
}

fn push(
    op: WriteOp,
    checks: &mut Vec<CheckRow>,
    statuses: &mut Vec<StatusRow>,
    waiters: &mut Vec<oneshot::Sender<()>>,
) {
    match op {
        WriteOp::Check(c) => checks.push(c),
        WriteOp::Status(s) => statuses.push(s),
        WriteOp::Flush(w) => waiters.push(w),
    }
}

async fn write(
    system: &crate::store::health::SystemStore,
    checks: &mut Vec<CheckRow>,
    statuses: &mut Vec<StatusRow>,
) {
    if checks.is_empty() && statuses.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    loop {
        match system.write_results(checks, statuses).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(
                    message = "Writing health results failed; retrying.",
                    results = checks.len(),
                    %error,
                    waited_ms = started.elapsed().as_millis() as u64,
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
    crate::health::metrics::writer_batch(checks.len() + statuses.len());
    checks.clear();
    statuses.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use chrono::Utc;
    use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
    use uuid::Uuid;

    fn check(id: Uuid) -> WriteOp {
        WriteOp::Check(CheckRow {
            integration_id: id,
            tenant_id: "t".into(),
            checked_at: Utc::now(),
            status: "healthy",
            reason: None,
            latency_ms: 1,
            error_message: None,
        })
    }

    #[tokio::test]
    async fn a_burst_is_written_in_few_batches_and_nothing_is_lost() {
        let store = testing::store().await;
        let (writer, task) =
            ResultWriter::spawn(store.clone(), 500, Duration::from_millis(50), 20_000);
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
        let (writer, task) =
            ResultWriter::spawn(store.clone(), 100, Duration::from_millis(10), 1_000);
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
