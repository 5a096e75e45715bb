//! The webhook relay: outbox → `alert_deliveries`, one transaction per batch of events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::CURSOR;
use crate::events::metrics;
use crate::store::alerts::WebhookStore;

/// Reads the outbox after its cursor whenever the hub says a newer event was committed (and
/// every `poll` in case a wake-up was missed), and hands queued deliveries to the worker.
pub struct Relay {
    pub store: WebhookStore,
    /// The highest committed `seq`, published by the result writer.
    pub latest: watch::Receiver<i64>,
    /// Told when deliveries were queued.
    pub wake: Arc<Notify>,
    pub batch: u64,
    pub poll: Duration,
    pub stop: watch::Receiver<bool>,
}

impl Relay {
    pub async fn run(mut self) {
        let mut hub_open = true;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let more = match self.store.fan_out(CURSOR, self.batch).await {
                Ok(pass) => {
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
                    pass.events as u64 >= self.batch
                }
                Err(error) => {
                    tracing::warn!(message = "Webhook relay failed; retrying.", %error);
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                changed = self.stop.changed() => if changed.is_err() { break },
                changed = self.latest.changed(), if hub_open => {
                    hub_open = changed.is_ok();
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
