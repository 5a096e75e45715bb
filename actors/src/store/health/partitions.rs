//! The daily partitions of `health_checks` (on `checked_at`) and `health_summaries` (on
//! `hour`) on PostgreSQL. SQLite keeps one table of each; every method here is a no-op there.
//!
//! - **Created ahead** by the health engine's retention task (today and the next
//!   [`DAYS_AHEAD`] days), each as a table of its own — `CREATE TABLE … (LIKE parent)`, its
//!   indexes, row-level security enabled and forced — then attached. Attaching takes `SHARE
//!   UPDATE EXCLUSIVE` on the parent, which inserts and reads do not wait for (`CREATE TABLE …
//!   PARTITION OF` would take `ACCESS EXCLUSIVE`, queueing the result writer behind any long
//!   read). The role that owns the parent (the one that ran the migrations) owns its
//!   partitions: no superuser, no extension.
//! - **Dropped whole**: `DETACH PARTITION … CONCURRENTLY` (waits for the readers of the
//!   partition without blocking anyone), then `DROP TABLE`. A detach that was interrupted is
//!   finished (`FINALIZE`) before anything else happens to its table.
//! - The tables of before the upgrade (`…_legacy`) are one partition each, bounded
//!   `[MINVALUE, day of the upgrade + 1)`: retention deletes from them in batches until their
//!   bound has passed, then drops them like any other.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, RuntimeErr, TransactionTrait};

use super::start_of_day;
use crate::store::SystemStore;

/// Days of partitions created after today.
pub const DAYS_AHEAD: i64 = 3;

/// Longest a partition change waits for a lock before giving up until the next pass.
const LOCK_TIMEOUT: &str = "10s";

/// A table partitioned by day.
#[derive(Debug)]
pub struct Table {
    pub parent: &'static str,
    /// Each partition's indexes besides those of the parent (`{p}` is the partition).
    indexes: &'static [&'static str],
}

/// Raw results: one b-tree for the history page and uptime, a BRIN for the summariser, and a
/// partial index of the few rows that carry folded checks.
pub const RESULTS: Table = Table {
    parent: "health_checks",
    indexes: &[
        "CREATE INDEX {p}_history ON {p} (integration_id, checked_at DESC)",
        "CREATE INDEX {p}_time ON {p} USING brin (checked_at)",
        "CREATE INDEX {p}_folded ON {p} (checked_at) WHERE folded IS NOT NULL",
    ],
};

/// Hourly summaries: the primary key `(integration_id, hour)` comes from the parent.
pub const SUMMARIES: Table = Table {
    parent: "health_summaries",
    indexes: &[],
};

/// One partition and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// The lower bound; `None` for `MINVALUE` (a legacy partition).
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// A detach that was interrupted and must be finished.
    pub detach_pending: bool,
}

impl Partition {
    /// Whether this is one day's partition (dropped whole, never deleted from).
    pub fn is_day(&self) -> bool {
        self.from
            .is_some_and(|from| self.to - from == ChronoDuration::days(1))
    }
}

fn db_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e.into()))
}

fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S+00"))
}

/// One bound as `pg_get_expr` prints it: `MINVALUE` or a quoted timestamp.
fn parse_bound(s: &str) -> Option<Option<DateTime<Utc>>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("MINVALUE") {
        return Some(None);
    }
    let s = s.strip_prefix('\'')?.strip_suffix('\'')?;
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z")
        .ok()
        .map(|t| Some(t.with_timezone(&Utc)))
}

/// `FOR VALUES FROM (…) TO (…)` into its two bounds.
fn parse_bounds(expr: &str) -> Option<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    let rest = expr.trim().strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    Some((parse_bound(from)?, parse_bound(to)??))
}

/// The statements that create and attach `table`'s partition for `day`.
fn create(table: &Table, day: DateTime<Utc>) -> Vec<String> {
    let parent = table.parent;
    let p = format!("{parent}_p{}", day.format("%Y%m%d"));
    let predicate = format!(
        "tenant_id = current_setting('{}', true) OR current_setting('{}', true) = 'on'",
        migration::rls::TENANT_SETTING,
        migration::rls::ALL_TENANTS_SETTING
    );
    let mut statements = vec![
        format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"),
        format!("CREATE TABLE {p} (LIKE {parent} INCLUDING DEFAULTS)"),
    ];
    statements.extend(table.indexes.iter().map(|i| i.replace("{p}", &p)));
    statements.extend([
        format!("ALTER TABLE {p} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {p} FORCE ROW LEVEL SECURITY"),
        format!(
            "CREATE POLICY tenant_isolation ON {p} USING ({predicate}) WITH CHECK ({predicate})"
        ),
        format!(
            "ALTER TABLE {parent} ATTACH PARTITION {p} FOR VALUES FROM ({}) TO ({})",
            literal(day),
            literal(day + ChronoDuration::days(1))
        ),
    ]);
    statements
}

impl SystemStore {
    /// Whether results and hourly summaries are partitioned (PostgreSQL).
    pub fn partitioned(&self) -> bool {
        self.db.get_database_backend() == DatabaseBackend::Postgres
    }

    /// `table`'s partitions, oldest first (a legacy partition first of all). Empty on SQLite.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn partitions(&self, table: &Table) -> Result<Vec<Partition>, DbErr> {
        if !self.partitioned() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT c.relname::text AS name, i.inhdetachpending AS pending, \
             pg_get_expr(c.relpartbound, c.oid) AS bound \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = $1::regclass",
        )
        .bind(table.parent)
        .fetch_all(self.db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
        let mut partitions = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("name").map_err(db_err)?;
            let bound: String = row.try_get("bound").map_err(db_err)?;
            let (from, to) = parse_bounds(&bound).ok_or_else(|| {
                DbErr::Custom(format!("partition {name} has bounds {bound}, not a range"))
            })?;
            partitions.push(Partition {
                name,
                from,
                to,
                detach_pending: row.try_get("pending").map_err(db_err)?,
            });
        }
        partitions.sort_by_key(|p| (p.from, p.to));
        Ok(partitions)
    }

    /// Creates the missing day partitions of results and hourly summaries for every day from
    /// `from` to `to`, both included; days a partition already covers are skipped. Returns the
    /// partitions created.
    ///
    /// # Errors
    /// [`DbErr`]: a partition that could not be created (others may have been).
    pub async fn ensure_partitions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, DbErr> {
        let mut created = Vec::new();
        if !self.partitioned() {
            return Ok(created);
        }
        for table in [&RESULTS, &SUMMARIES] {
            let existing = self.partitions(table).await?;
            let mut day = start_of_day(from);
            while day <= start_of_day(to) {
                let end = day + ChronoDuration::days(1);
                let covered = existing
                    .iter()
                    .any(|p| p.from.is_none_or(|f| f < end) && p.to > day);
                if !covered {
                    let txn = self.db.begin().await?;
                    for statement in create(table, day) {
                        txn.execute_unprepared(&statement).await?;
                    }
                    txn.commit().await?;
                    created.push(format!("{}_p{}", table.parent, day.format("%Y%m%d")));
                }
                day = end;
            }
        }
        Ok(created)
    }

    /// Whether a partition holds any row.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn partition_has_rows(&self, partition: &Partition) -> Result<bool, DbErr> {
        let txn = crate::store::begin_all_tenants(&self.db, false).await?;
        let row = txn
            .query_one_raw(sea_orm::Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT EXISTS (SELECT 1 FROM {}) AS any", partition.name),
            ))
            .await?;
        txn.commit().await?;
        Ok(match row {
            Some(row) => row.try_get::<bool>("", "any")?,
            None => false,
        })
    }

    /// Detaches `partition` from `table` without blocking its readers or writers, then drops
    /// it. Returns how long each took: the detach is a catalog change (milliseconds, plus the
    /// wait for queries that started before it); the drop frees the files, which the file
    /// system does at its own pace (about 0.3 s per GB on the development machine), holding
    /// no lock anyone else wants.
    ///
    /// # Errors
    /// [`DbErr`]: a lock not granted within 10 s, for one; the partition is then dropped on a
    /// later pass (a detach left half done is finished first).
    pub async fn drop_partition(
        &self,
        table: &Table,
        partition: &Partition,
    ) -> Result<Dropped, DbErr> {
        let pool = self.db.get_postgres_connection_pool();
        let mut conn = pool.acquire().await.map_err(db_err)?;
        let (parent, p) = (table.parent, &partition.name);
        // Outside a transaction: `DETACH … CONCURRENTLY` runs two of its own.
        let detach = if partition.detach_pending {
            format!("ALTER TABLE {parent} DETACH PARTITION {p} FINALIZE")
        } else {
            format!("ALTER TABLE {parent} DETACH PARTITION {p} CONCURRENTLY")
        };
        let mut result = Ok(());
        let mut took = [Duration::ZERO; 3];
        for (i, statement) in [
            format!("SET lock_timeout = '{LOCK_TIMEOUT}'"),
            detach,
            format!("DROP TABLE {p}"),
        ]
        .into_iter()
        .enumerate()
        {
            let started = Instant::now();
            result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map(|_| ());
            took[i] = started.elapsed();
            if result.is_err() {
                break;
            }
        }
        if sqlx::raw_sql("RESET lock_timeout")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            // Never hand a connection with a changed setting back to the pool.
            conn.close_on_drop();
        }
        result.map_err(db_err)?;
        Ok(Dropped {
            detach: took[1],
            drop: took[2],
        })
    }
}

/// How long dropping a partition took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Detaching it: from then on no query sees it.
    pub detach: Duration,
    /// Dropping the detached table: freeing its files.
    pub drop: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_read_as_printed() {
        let (from, to) = parse_bounds(
            "FOR VALUES FROM ('2026-12-07 00:00:00+00') TO ('2026-12-08 00:00:00+00')",
        )
        .unwrap();
        assert_eq!(from.unwrap().to_rfc3339(), "2026-12-07T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-12-08T00:00:00+00:00");
        let (from, to) =
            parse_bounds("FOR VALUES FROM (MINVALUE) TO ('2026-12-07 01:00:00+01')").unwrap();
        assert_eq!(from, None);
        assert_eq!(to.to_rfc3339(), "2026-12-07T00:00:00+00:00");
        assert_eq!(parse_bounds("DEFAULT"), None);
    }
}
