//! The webhook relay: outbox → `webhook_deliveries`, one transaction per batch of events. An
//! [`OutboxSink`]: the shared driver wakes it on each commit (and every poll interval in case a
//! wake-up was missed) and backs off when the database fails.

use std::sync::Arc;

use sea_orm::DbErr;
use tokio::sync::{Notify, watch};

use super::CURSOR;
use crate::events::metrics;
use crate::sinks::{OutboxSink, Progress};
use crate::store::webhooks::WebhookStore;

/// Fans events out into queued deliveries and tells the worker when it queued some.
pub struct Relay {
    pub store: WebhookStore,
    /// Told when deliveries were queued.
    pub wake: Arc<Notify>,
    pub batch: u64,
    /// How far the outbox may be read (the incident correlator's gate).
    pub gate: watch::Receiver<i64>,
}

#[async_trait::async_trait]
impl OutboxSink for Relay {
    type Error = DbErr;

    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn pass(&mut self) -> Result<Progress, DbErr> {
        let until = *self.gate.borrow();
        let pass = self.store.fan_out_until(CURSOR, self.batch, until).await?;
        metrics::published("webhooks", pass.events);
        if pass.deliveries > 0 {
            self.wake.notify_one();
            tracing::debug!(
                message = "Queued webhook deliveries.",
                events = pass.events,
                deliveries = pass.deliveries,
                cursor = pass.cursor,
            );
        }
        Ok(if pass.events as u64 >= self.batch {
            Progress::More
        } else {
            Progress::Idle
        })
    }
}
