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
}

impl EventHub {
    /// `capacity` events are buffered per subscriber; one that falls further behind is told
    /// it lagged and reads the outbox instead.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        let (latest, _) = watch::channel(0);
        Self {
            live,
            latest: Arc::new(latest),
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
