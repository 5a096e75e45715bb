//! The change feed: one notification per committed catalog change, for everyone who follows the
//! catalog (the health engine, the webhook worker).
//!
//! Every writer publishes here after its transaction commits and never before, so a follower
//! never acts on a change that was rolled back. A follower that joins late misses what was
//! published before it joined: followers subscribe before the writers start, and each reads
//! the database once at start-up for the state before that.
//!
//! This is the seam between one process and many: in a cluster the same changes also travel
//! between replicas, and followers do not need to know where a change was made.

use std::sync::{Arc, Mutex};

use entity::integration::Model;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use uuid::Uuid;

use crate::events::maintenance::Window;
use crate::tenant::TenantId;

/// A committed change to the catalog.
#[derive(Debug, Clone)]
pub enum Change {
    /// Created, updated, or its monitoring changed: the integration as it now is.
    IntegrationUpserted(Arc<Model>),
    /// Soft-deleted.
    IntegrationDeleted { tenant: TenantId, id: Uuid },
    /// A maintenance window was created.
    WindowCreated(Window),
    /// A maintenance window was deleted.
    WindowDeleted {
        tenant: TenantId,
        integration_id: Uuid,
        window_id: Uuid,
    },
    /// Every maintenance window that can still become active, as read from the database at
    /// `read_at` (in a cluster, to repair a missed window change): replaces what followers know
    /// of windows, except for changes they learned after the read.
    WindowsReconciled {
        windows: Arc<Vec<Window>>,
        read_at: tokio::time::Instant,
    },
    /// A webhook subscription was created, replaced or deleted.
    SubscriptionChanged { tenant: TenantId, id: Uuid },
    /// A dead delivery was put back in the queue.
    DeliveryRequeued {
        tenant: TenantId,
        subscription_id: Uuid,
    },
    /// The connector of a provider type was added, replaced or removed (plugin discovery).
    ConnectorChanged { provider_type: String },
    /// Plugin discovery was asked for on this replica (`elsewhere: false`, told to the others)
    /// or on another one (`true`): each replica then runs its own, for its own directories.
    PluginsDiscovered { elsewhere: bool },
}

/// Where committed changes are published and followed. Cloning shares the feed.
///
/// Each follower has its own unbounded queue, so a slow follower never makes a writer wait
/// and never loses a change; changes are few next to health results (one per API write).
#[derive(Clone, Default, Debug)]
pub struct ChangeFeed {
    followers: Arc<Mutex<Vec<UnboundedSender<Change>>>>,
    /// In a cluster: where changes made here go to be told to the other replicas.
    outgoing: Arc<Mutex<Option<UnboundedSender<Change>>>>,
}

impl ChangeFeed {
    /// Every change published from now on, in publication order.
    pub fn follow(&self) -> UnboundedReceiver<Change> {
        let (tx, rx) = unbounded_channel();
        self.followers.lock().expect("not poisoned").push(tx);
        rx
    }

    /// Announces a change committed here to every follower (and, in a cluster, to the other
    /// replicas); followers that have gone are dropped.
    pub fn publish(&self, change: Change) {
        if let Some(outgoing) = &*self.outgoing.lock().expect("not poisoned") {
            let _ = outgoing.send(change.clone());
        }
        self.publish_remote(change);
    }

    /// Announces a change another replica committed: to the followers here only.
    pub fn publish_remote(&self, change: Change) {
        self.followers
            .lock()
            .expect("not poisoned")
            .retain(|follower| follower.send(change.clone()).is_ok());
    }

    /// The changes made here from now on, to be told to the other replicas (one taker).
    pub fn outgoing(&self) -> UnboundedReceiver<Change> {
        let (tx, rx) = unbounded_channel();
        *self.outgoing.lock().expect("not poisoned") = Some(tx);
        rx
    }

    /// How many followers are listening (for tests and start-up checks).
    pub fn followers(&self) -> usize {
        self.followers.lock().expect("not poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requeued(n: u128) -> Change {
        Change::DeliveryRequeued {
            tenant: TenantId::new("t").unwrap(),
            subscription_id: Uuid::from_u128(n),
        }
    }

    fn id(change: Change) -> u128 {
        match change {
            Change::DeliveryRequeued {
                subscription_id, ..
            } => subscription_id.as_u128(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_follower_gets_every_change_in_order() {
        let feed = ChangeFeed::default();
        let mut first = feed.follow();
        let mut second = feed.follow();
        for n in 1..=3 {
            feed.publish(requeued(n));
        }
        for follower in [&mut first, &mut second] {
            let got: Vec<u128> = (0..3).map(|_| id(follower.try_recv().unwrap())).collect();
            assert_eq!(got, [1, 2, 3]);
            assert!(follower.try_recv().is_err());
        }
    }

    #[tokio::test]
    async fn a_late_follower_sees_only_what_follows_and_a_gone_one_is_dropped() {
        let feed = ChangeFeed::default();
        let gone = feed.follow();
        feed.publish(requeued(1));
        let mut late = feed.follow();
        drop(gone);
        feed.publish(requeued(2));
        assert_eq!(id(late.try_recv().unwrap()), 2);
        assert!(late.try_recv().is_err());
        assert_eq!(feed.followers(), 1);
    }
}
