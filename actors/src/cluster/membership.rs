//! The lease loop: heartbeat, renew, claim or release towards an even share, take the leader
//! lease when it is free, and publish what this replica owns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use sea_orm::DbErr;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ClusterSettings, Ownership};
use crate::store::Store;
use crate::store::cluster::{ClusterStore, LEADER, shard_lease, shard_of_lease};

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the cluster's database")]
    Db(#[from] DbErr),
    #[error(
        "the database holds {existing} shards but [cluster] shards = {configured}: every replica of a cluster must use the same number"
    )]
    Shards { existing: u32, configured: u32 },
}

/// This replica's membership of the cluster. Dropping it without [`Membership::stop`] leaves
/// its leases to expire.
pub struct Membership {
    replica: Arc<str>,
    shards: u32,
    ownership: watch::Receiver<Ownership>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Membership {
    /// Joins the cluster: creates the leases if this is the first replica, checks the number of
    /// shards, and starts the lease loop. The first round runs before this returns, so the
    /// replica starts with its share.
    ///
    /// # Errors
    /// [`JoinError`].
    pub async fn start(
        store: &Store,
        settings: &ClusterSettings,
        replica: String,
    ) -> Result<Self, JoinError> {
        let cluster = store.cluster();
        let mut existing = cluster.shard_count().await?;
        if existing == 0 {
            // The first replica creates the leases (two first replicas create the same rows).
            cluster.ensure_leases(settings.shards).await?;
            existing = cluster.shard_count().await?;
        }
        if existing != settings.shards {
            return Err(JoinError::Shards {
                existing,
                configured: settings.shards,
            });
        }
        let replica: Arc<str> = replica.into();
        let mut lease = Leases {
            cluster,
            settings: settings.clone(),
            replica: replica.clone(),
            current: Ownership::default(),
        };
        let started = Instant::now();
        let (first, release) = lease.round(started).await?;
        lease.current = first.clone();
        lease.release(release).await;
        let (tx, ownership) = watch::channel(first);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(lease.run(tx, stopped, started));
        tracing::info!(
            message = "Joined the cluster.",
            replica = %replica,
            shards_owned = ownership.borrow().shards.len(),
            leader = ownership.borrow().is_leader(),
        );
        Ok(Self {
            replica,
            shards: settings.shards,
            ownership,
            stop,
            task,
        })
    }

    /// This replica's name.
    pub fn replica(&self) -> &Arc<str> {
        &self.replica
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// What this replica owns, as it changes.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.clone()
    }

    /// Whether the leases are renewed in time (a replica that cannot renew is not ready).
    pub fn renewing(&self) -> bool {
        self.ownership.borrow().renewed_in_time()
    }

    /// Leaves the cluster: every lease released at once, so the others take over without
    /// waiting for expiry.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The loop's state.
struct Leases {
    cluster: ClusterStore,
    settings: ClusterSettings,
    replica: Arc<str>,
    current: Ownership,
}

impl Leases {
    fn ttl(&self) -> f64 {
        self.settings.lease_ttl().as_secs_f64()
    }

    async fn run(
        mut self,
        tx: watch::Sender<Ownership>,
        mut stop: watch::Receiver<bool>,
        mut started: Instant,
    ) {
        loop {
            let next_round = started + self.settings.renew();
            loop {
                let fence_at = self
                    .current
                    .valid_until
                    .filter(|_| self.current != Ownership::default());
                tokio::select! {
                    _ = stop.changed() => {
                        self.leave(&tx).await;
                        return;
                    }
                    () = tokio::time::sleep_until(next_round) => break,
                    () = sleep_until_some(fence_at) => {
                        tracing::warn!(
                            message = "Leases not renewed in time: this replica stops acting on them until it renews.",
                            replica = %self.replica,
                        );
                        self.current = Ownership::default();
                        tx.send_replace(self.current.clone());
                    }
                }
            }
            started = Instant::now();
            match self.round(started).await {
                Ok((next, release)) => {
                    if next.shards.keys().ne(self.current.shards.keys()) {
                        metrics().rebalances.add(1, &[]);
                    }
                    self.current = next;
                    tx.send_replace(self.current.clone());
                    // Released only once nothing here acts on them any more.
                    self.release(release).await;
                }
                Err(error) => tracing::warn!(
                    message = "Renewing the cluster's leases failed; retrying.",
                    replica = %self.replica,
                    %error,
                ),
            }
        }
    }

    /// One round: what this replica owns next, and the leases to release once that is
    /// published. Leases count as valid from `started`, before anything was asked of the
    /// database, so the local deadline is never later than the database's.
    async fn round(&mut self, started: Instant) -> Result<(Ownership, Vec<String>), DbErr> {
        let ttl = self.ttl();
        self.cluster
            .heartbeat(&self.replica, self.settings.advertise_url.as_deref())
            .await?;
        let held = self.cluster.renew(&self.replica, ttl).await?;
        let mut shards: BTreeMap<u32, i64> = held
            .iter()
            .filter_map(|h| Some((shard_of_lease(&h.name)?, h.epoch)))
            .collect();
        let mut leader = held.iter().find(|h| h.name == LEADER).map(|h| h.epoch);
        let live = self.cluster.live_replicas(ttl).await?;
        metrics()
            .replicas
            .store(live.len() as i64, Ordering::Relaxed);
        let live = u32::try_from(live.len().max(1)).unwrap_or(u32::MAX);
        let target = self.settings.shards.div_ceil(live) as usize;
        let mut release = Vec::new();
        if shards.len() < target {
            let wanted = u32::try_from(target - shards.len()).unwrap_or(u32::MAX);
            for h in self
                .cluster
                .claim_shards(&self.replica, ttl, wanted)
                .await?
            {
                if let Some(shard) = shard_of_lease(&h.name) {
                    shards.insert(shard, h.epoch);
                }
            }
        } else if shards.len() > target {
            let extra = shards.len() - target;
            let gone: Vec<u32> = shards.keys().rev().take(extra).copied().collect();
            for shard in gone {
                shards.remove(&shard);
                release.push(shard_lease(shard));
            }
        }
        if leader.is_none() {
            leader = self
                .cluster
                .claim_leader(&self.replica, ttl)
                .await?
                .map(|h| h.epoch);
            if leader.is_some() {
                tracing::info!(message = "This replica is the leader now.", replica = %self.replica);
            }
        }
        if leader.is_some() {
            // Rows of replicas gone for good; their leases expired long ago.
            self.cluster.forget_silent(ttl * 20.0).await?;
        }
        metrics()
            .owned
            .store(shards.len() as i64, Ordering::Relaxed);
        Ok((
            Ownership {
                shards,
                leader,
                valid_until: Some(started + self.settings.lease_ttl()),
            },
            release,
        ))
    }

    async fn release(&self, names: Vec<String>) {
        if let Err(error) = self.cluster.release(&self.replica, &names).await {
            // They expire on their own.
            tracing::warn!(message = "Releasing leases failed.", %error);
        }
    }

    async fn leave(&mut self, tx: &watch::Sender<Ownership>) {
        self.current = Ownership::default();
        tx.send_replace(self.current.clone());
        metrics().owned.store(0, Ordering::Relaxed);
        if let Err(error) = self.cluster.leave(&self.replica).await {
            tracing::warn!(message = "Leaving the cluster failed; the leases expire on their own.", %error);
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Metrics {
    replicas: Arc<AtomicI64>,
    owned: Arc<AtomicI64>,
    rebalances: opentelemetry::metrics::Counter<u64>,
    _gauges: [opentelemetry::metrics::ObservableGauge<i64>; 2],
}

/// `integration_cluster_replicas`, `integration_cluster_shards_owned`,
/// `integration_cluster_rebalances_total`.
fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("stella-integrations");
        let replicas = Arc::new(AtomicI64::new(0));
        let owned = Arc::new(AtomicI64::new(0));
        let (r, o) = (replicas.clone(), owned.clone());
        Metrics {
            rebalances: meter
                .u64_counter("integration_cluster_rebalances")
                .with_unit("{rebalance}")
                .with_description("Changes of the set of shards this replica owns.")
                .build(),
            _gauges: [
                meter
                    .i64_observable_gauge("integration_cluster_replicas")
                    .with_unit("{replica}")
                    .with_description(
                        "Live replicas of the cluster, as this replica last saw them.",
                    )
                    .with_callback(move |o| o.observe(r.load(Ordering::Relaxed), &[]))
                    .build(),
                meter
                    .i64_observable_gauge("integration_cluster_shards_owned")
                    .with_unit("{shard}")
                    .with_description("Shards of the fleet this replica owns.")
                    .with_callback(move |obs| obs.observe(o.load(Ordering::Relaxed), &[]))
                    .build(),
            ],
            replicas,
            owned,
        }
    })
}
