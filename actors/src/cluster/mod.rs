//! Several replicas over one PostgreSQL database, sharing the fleet by lease.
//!
//! The fleet is split into shards (`shard = integration id mod shards`). Each replica keeps a
//! heartbeat row and renews the leases it holds every `renew_seconds`; it aims at an even share
//! (`ceil(shards / live replicas)`), claiming free or expired shards when it has fewer and
//! releasing extras when it has more, so a replica that joins takes a share and one that dies
//! has its shards taken within the lease period. One lease more, the leader's, decides which
//! replica runs the cluster-wide duties.
//!
//! Safety does not rest on clocks agreeing: leases expire on the database clock, and a replica
//! stops acting on a lease by itself once its own monotonic clock says the lease may have
//! expired (self-fencing: the lease was renewed at least that long before). Every health result
//! a replica writes is checked, in the writing transaction, against the lease it was produced
//! under (write fencing: [`crate::store::cluster::Fence`]), so a replica that was paused past
//! its lease cannot write after another took over.
//!
//! # Layout
//! - [`settings`]: the `[cluster]` section.
//! - [`membership`]: the lease loop and the [`Ownership`] it publishes.
//! - [`bus`]: what the replicas tell each other (catalog changes, outbox growth) over
//!   `LISTEN`/`NOTIFY`, with a periodic reconciliation.

pub mod bus;
pub mod membership;
pub mod settings;

use std::collections::BTreeMap;

use tokio::time::Instant;
use uuid::Uuid;

pub use membership::Membership;
pub use settings::{ClusterSettings, InvalidClusterSettings};

/// The shard of an integration: its id modulo the number of shards (the low bits of a UUID v4
/// or v7 are random, so the fleet spreads evenly).
pub fn shard_of(id: Uuid, shards: u32) -> u32 {
    (id.as_u128() % u128::from(shards.max(1))) as u32
}

/// What this replica may act on now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Shards held, with the epoch each is held under.
    pub shards: BTreeMap<u32, i64>,
    /// The leader lease's epoch, when this replica is the leader.
    pub leader: Option<i64>,
    /// When the leases may expire by this replica's own clock: past it, nothing is owned.
    pub valid_until: Option<Instant>,
}

impl Ownership {
    /// The epoch a shard is held under, when it is held.
    pub fn epoch(&self, shard: u32) -> Option<i64> {
        self.shards.get(&shard).copied()
    }

    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// Whether the leases were renewed in time (a replica that cannot renew is not ready).
    pub fn renewed_in_time(&self) -> bool {
        self.valid_until.is_some_and(|until| until > Instant::now())
    }
}

/// Runs `duty` while this replica is the leader (always, outside a cluster), stopping it when
/// the leadership is lost and starting it afresh when it comes back. Ends when the ownership
/// channel closes.
pub async fn while_leader<F, Fut>(
    ownership: Option<tokio::sync::watch::Receiver<Ownership>>,
    duty: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(mut ownership) = ownership else {
        return duty().await;
    };
    loop {
        if ownership.wait_for(Ownership::is_leader).await.is_err() {
            return;
        }
        tokio::select! {
            () = duty() => return,
            lost = async { ownership.wait_for(|o| !o.is_leader()).await.map(|_| ()) } => {
                if lost.is_err() {
                    return;
                }
            }
        }
    }
}

/// What the engine and the result writer of a replica know of the cluster.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub replica: std::sync::Arc<str>,
    pub shards: u32,
    pub ownership: tokio::sync::watch::Receiver<Ownership>,
}

impl ClusterView {
    /// The lease an integration is owned under now, if this replica owns it: (shard, epoch).
    pub fn stamp(&self, integration: Uuid) -> Option<(u32, i64)> {
        let shard = shard_of(integration, self.shards);
        self.ownership
            .borrow()
            .epoch(shard)
            .map(|epoch| (shard, epoch))
    }

    /// Whether this replica owns the integration now.
    pub fn owns(&self, integration: Uuid) -> bool {
        self.stamp(integration).is_some()
    }

    /// Whether the leases are renewed in time (a replica that cannot renew is not ready).
    pub fn renewing(&self) -> bool {
        self.ownership.borrow().renewed_in_time()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn shards_spread_evenly_and_stay_put() {
        let shards = 16;
        let mut counts = [0u32; 16];
        for _ in 0..16_000 {
            counts[shard_of(Uuid::now_v7(), shards) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        let id = Uuid::now_v7();
        assert_eq!(shard_of(id, shards), shard_of(id, shards));
        assert_eq!(shard_of(id, 1), 0);
    }
}
