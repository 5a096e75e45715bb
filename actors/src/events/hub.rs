//! Live fan-out of committed events: the result writer publishes each batch once it is
//! committed; SSE streams subscribe, and relays wait on the latest sequence number.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::StoredEvent;

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventHub {
    live: broadcast::Sender<Arc<StoredEvent>>,
    latest: Arc<watch::Sender<i64>>,
    /// How far the webhook and NATS channels may read the outbox: `i64::MAX` unless the
    /// incident correlator gates them (`events::incidents`); SSE is never gated.
    gate: Arc<watch::Sender<i64>>,
}

impl EventHub {
    /// `capacity` events are buffered per subscriber; one that falls further behind is told
    /// it lagged and reads the outbox instead.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        let (latest, _) = watch::channel(0);
        let (gate, _) = watch::channel(i64::MAX);
        Self {
            live,
            latest: Arc::new(latest),
            gate: Arc::new(gate),
        }
    }

    /// Closes the channels' gate until the incident correlator opens it (before the channels
    /// start, so none reads an event that has not been decided on).
    pub fn close_gate(&self) {
        self.gate.send_replace(0);
    }

    /// Lets the channels read the outbox up to `seq`.
    pub fn open_gate(&self, seq: i64) {
        self.gate.send_if_modified(|gate| {
            let changed = *gate != seq;
            *gate = seq;
            changed
        });
    }

    /// Whether the channels are gated (incident correlation is on).
    pub fn gated(&self) -> bool {
        *self.gate.borrow() != i64::MAX
    }

    /// How far the channels may read; changes when the correlator decides.
    pub fn gate(&self) -> watch::Receiver<i64> {
        self.gate.subscribe()
    }

    /// What a channel wakes on: the gate when gated, else every commit.
    pub fn channel_wake(&self) -> watch::Receiver<i64> {
        if self.gated() {
            self.gate()
        } else {
            self.latest()
        }
    }

    /// Hands on committed events, in `seq` order.
    pub fn publish(&self, events: impl IntoIterator<Item = StoredEvent>) {
        let mut last = None;
        for event in events {
            last = Some(event.seq);
            let _ = self.live.send(Arc::new(event));
        }
        if let Some(seq) = last {
            self.latest.send_if_modified(|latest| {
                let newer = seq > *latest;
                if newer {
                    *latest = seq;
                }
                newer
            });
        }
    }

    /// Every event committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live.subscribe()
    }

    /// The highest `seq` committed since start-up (0 before the first), for relays to wait on.
    pub fn latest(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(4096)
    }
}
