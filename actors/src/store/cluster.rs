//! The cluster's shared state on PostgreSQL: replicas' heartbeats and the leases (the leader's,
//! and one per shard of the fleet), every time on the database clock.
//!
//! A lease is held while `expires_at` is in the future; taking one that is free or expired
//! raises its `epoch`, so a holder that lost its lease and took it again is a new holder. Rows
//! are taken with `FOR UPDATE SKIP LOCKED`, so replicas claiming at the same moment share the
//! free leases instead of queueing on them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::Store;

/// The name of the leader lease.
pub const LEADER: &str = "leader";

/// The name of a shard's lease.
pub fn shard_lease(shard: u32) -> String {
    format!("shard/{shard}")
}

/// The shard of a lease name, when it is one.
pub fn shard_of_lease(name: &str) -> Option<u32> {
    name.strip_prefix("shard/")?.parse().ok()
}

/// A lease this replica holds: its name and the epoch it holds it under.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct Held {
    pub name: String,
    pub epoch: i64,
}

/// A replica, as its heartbeat row says.
#[derive(Clone, Debug, FromQueryResult)]
pub struct ReplicaRow {
    pub id: String,
    pub advertise_url: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// A lease row as stored.
#[derive(Clone, Debug, FromQueryResult)]
pub struct LeaseRow {
    pub name: String,
    pub holder: Option<String>,
    pub epoch: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The cluster tables; PostgreSQL only.
#[derive(Clone, Debug)]
pub struct ClusterStore {
    db: DatabaseConnection,
}

impl Store {
    /// The PostgreSQL pool, for what sea-orm does not offer (`LISTEN`).
    ///
    /// # Panics
    /// On SQLite: a cluster runs on PostgreSQL only.
    pub fn postgres_pool(&self) -> &sea_orm::sqlx::PgPool {
        self.db.get_postgres_connection_pool()
    }

    /// Sends `payload` on the PostgreSQL notification `channel`.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), DbErr> {
        self.db
            .execute_raw(ClusterStore::statement(
                "SELECT pg_notify($1, $2)",
                [channel.into(), payload.into()],
            ))
            .await?;
        Ok(())
    }

    /// The cluster's leases and heartbeats.
    pub fn cluster(&self) -> ClusterStore {
        ClusterStore {
            db: self.db.clone(),
        }
    }
}

impl ClusterStore {
    fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, values)
    }

    /// Creates the leader lease and the leases of shards `0..shards` that do not exist yet.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn ensure_leases(&self, shards: u32) -> Result<(), DbErr> {
        self.db
            .execute_raw(Self::statement(
                "INSERT INTO cluster_leases (name, epoch) \
                 SELECT 'shard/' || s, 0 FROM generate_series(0, $1 - 1) AS s \
                 UNION ALL SELECT $2, 0 \
                 ON CONFLICT (name) DO NOTHING",
                [i64::from(shards).into(), LEADER.into()],
            ))
            .await?;
        Ok(())
    }

    /// How many shard leases exist (a cluster must agree on its number of shards).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn shard_count(&self) -> Result<u32, DbErr> {
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        let row = Count::find_by_statement(Self::statement(
            "SELECT count(*) AS n FROM cluster_leases WHERE name LIKE 'shard/%'",
            [],
        ))
        .one(&self.db)
        .await?;
        Ok(row.map_or(0, |c| u32::try_from(c.n).unwrap_or(u32::MAX)))
    }

    /// Records that `replica` is alive now (and when it started, the first time).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn heartbeat(&self, replica: &str, advertise_url: Option<&str>) -> Result<(), DbErr> {
        self.db
            .execute_raw(Self::statement(
                "INSERT INTO cluster_replicas (id, advertise_url, started_at, heartbeat_at) \
                 VALUES ($1, $2, now(), now()) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), \
                 advertise_url = EXCLUDED.advertise_url",
                [replica.into(), advertise_url.map(str::to_owned).into()],
            ))
            .await?;
        Ok(())
    }

    /// Replicas whose last heartbeat is younger than `ttl_seconds`, oldest first.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn live_replicas(&self, ttl_seconds: f64) -> Result<Vec<ReplicaRow>, DbErr> {
        ReplicaRow::find_by_statement(Self::statement(
            "SELECT id, advertise_url, started_at, heartbeat_at FROM cluster_replicas \
             WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY started_at, id",
            [ttl_seconds.into()],
        ))
        .all(&self.db)
        .await
    }

    /// Extends every lease `replica` still holds by `ttl_seconds` from now; a lease that
    /// expired first is not renewed (it is lost, or can be claimed again under a new epoch).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn renew(&self, replica: &str, ttl_seconds: f64) -> Result<Vec<Held>, DbErr> {
        Held::find_by_statement(Self::statement(
            "UPDATE cluster_leases SET expires_at = now() + make_interval(secs => $2) \
             WHERE holder = $1 AND expires_at > now() RETURNING name, epoch",
            [replica.into(), ttl_seconds.into()],
        ))
        .all(&self.db)
        .await
    }

    /// Takes up to `limit` free or expired shard leases for `replica`, each under a new epoch.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn claim_shards(
        &self,
        replica: &str,
        ttl_seconds: f64,
        limit: u32,
    ) -> Result<Vec<Held>, DbErr> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Held::find_by_statement(Self::statement(
            "UPDATE cluster_leases SET holder = $1, epoch = epoch + 1, \
             expires_at = now() + make_interval(secs => $2) \
             WHERE name IN (SELECT name FROM cluster_leases \
                 WHERE name LIKE 'shard/%' AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now()) \
                 ORDER BY random() LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING name, epoch",
            [replica.into(), ttl_seconds.into(), i64::from(limit).into()],
        ))
        .all(&self.db)
        .await
    }

    /// Takes the leader lease when it is free or expired.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn claim_leader(
        &self,
        replica: &str,
        ttl_seconds: f64,
    ) -> Result<Option<Held>, DbErr> {
        Held::find_by_statement(Self::statement(
            "UPDATE cluster_leases SET holder = $1, epoch = epoch + 1, \
             expires_at = now() + make_interval(secs => $2) \
             WHERE name = $3 AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now()) \
             RETURNING name, epoch",
            [replica.into(), ttl_seconds.into(), LEADER.into()],
        ))
        .one(&self.db)
        .await
    }

    /// Gives up leases `replica` holds, so another replica can take them at once.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn release(&self, replica: &str, names: &[String]) -> Result<(), DbErr> {
        if names.is_empty() {
            return Ok(());
        }
        self.db
            .execute_raw(Self::statement(
                "UPDATE cluster_leases SET holder = NULL, expires_at = NULL \
                 WHERE holder = $1 AND name = ANY($2)",
                [replica.into(), names.to_vec().into()],
            ))
            .await?;
        Ok(())
    }

    /// Leaves the cluster: every lease released and the heartbeat row removed.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn leave(&self, replica: &str) -> Result<(), DbErr> {
        self.db
            .execute_raw(Self::statement(
                "UPDATE cluster_leases SET holder = NULL, expires_at = NULL WHERE holder = $1",
                [replica.into()],
            ))
            .await?;
        self.db
            .execute_raw(Self::statement(
                "DELETE FROM cluster_replicas WHERE id = $1",
                [replica.into()],
            ))
            .await?;
        Ok(())
    }

    /// Where the replica that holds a shard's lease now can be reached.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn owner_url(&self, shard: u32) -> Result<Option<String>, DbErr> {
        #[derive(FromQueryResult)]
        struct Owner {
            advertise_url: Option<String>,
        }
        let owner = Owner::find_by_statement(Self::statement(
            "SELECT r.advertise_url FROM cluster_leases l JOIN cluster_replicas r ON r.id = l.holder \
             WHERE l.name = $1 AND l.expires_at > now()",
            [shard_lease(shard).into()],
        ))
        .one(&self.db)
        .await?;
        Ok(owner.and_then(|o| o.advertise_url))
    }

    /// Every lease, for the cluster's status.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, DbErr> {
        LeaseRow::find_by_statement(Self::statement(
            "SELECT name, holder, epoch, expires_at FROM cluster_leases ORDER BY name",
            [],
        ))
        .all(&self.db)
        .await
    }

    /// Forgets replicas silent for longer than `seconds` (their leases expired long ago).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn forget_silent(&self, seconds: f64) -> Result<(), DbErr> {
        self.db
            .execute_raw(Self::statement(
                "DELETE FROM cluster_replicas WHERE heartbeat_at < now() - make_interval(secs => $1)",
                [seconds.into()],
            ))
            .await?;
        Ok(())
    }
}

/// What a batch of results was produced under: the writing replica, and per integration the
/// shard lease (shard, epoch) it was owned under when its result reached the writer. A row
/// whose lease this replica no longer holds under that epoch, when the batch commits, is not
/// written.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    pub replica: Arc<str>,
    pub stamps: HashMap<Uuid, (u32, i64)>,
}

/// Inside a transaction that writes results: the shard leases `replica` holds now, with their
/// epochs, locked against a change of holder until the transaction ends (`FOR SHARE`: a taker
/// waits for the commit, so a write checked here cannot land after its lease moved on).
pub(crate) const HELD_SHARDS: &str = "SELECT name, epoch FROM cluster_leases \
     WHERE holder = $1 AND expires_at > now() AND name LIKE 'shard/%' FOR SHARE";

impl Fence {
    /// The shards of [`HELD_SHARDS`]' rows.
    pub(crate) fn held(rows: Vec<(String, i64)>) -> HashMap<u32, i64> {
        rows.into_iter()
            .filter_map(|(name, epoch)| Some((shard_of_lease(&name)?, epoch)))
            .collect()
    }

    /// Whether the integration's row may be written, given the leases held now.
    pub fn allows(&self, integration: Uuid, held: &HashMap<u32, i64>) -> bool {
        self.stamps
            .get(&integration)
            .is_some_and(|(shard, epoch)| held.get(shard) == Some(epoch))
    }
}
