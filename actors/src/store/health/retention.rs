//! Retention: raw results and daily summaries older than their cut-off go.
//!
//! On PostgreSQL a day of results is a partition, dropped whole ([`super::partitions`]); the
//! legacy partition (the table of before the upgrade) and SQLite's one table are deleted from
//! in batches, each its own short transaction.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};

use super::partitions::{Partition, RESULTS};
use super::statement;
use crate::store::SystemStore;

impl SystemStore {
    /// The time of the oldest stored result, found without a scan: SQLite's and the legacy
    /// partition's index on time, or the start of the oldest day partition that has a row.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn oldest_check(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        if !self.partitioned() {
            return self.min_checked_at("health_checks").await;
        }
        for p in self.partitions(&RESULTS).await? {
            if !p.is_day() {
                if let Some(oldest) = self.min_checked_at(&p.name).await? {
                    return Ok(Some(oldest));
                }
            } else if self.partition_has_rows(&p).await? {
                return Ok(p.from);
            }
        }
        Ok(None)
    }

    /// The earliest `checked_at` in `table`, through its index on time.
    async fn min_checked_at(&self, table: &str) -> Result<Option<DateTime<Utc>>, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = crate::store::begin_all_tenants(&self.db, false).await?;
        let row = txn
            .query_one_raw(statement(
                backend,
                &format!("SELECT min(checked_at) AS oldest FROM {table}"),
                [],
            ))
            .await?;
        txn.commit().await?;
        match row {
            Some(row) => row.try_get::<Option<DateTime<Utc>>>("", "oldest"),
            None => Ok(None),
        }
    }

    /// The day partitions of results that end at or before `cutoff`, to be dropped whole
    /// (oldest first; empty on SQLite).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn expired_result_partitions(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<Partition>, DbErr> {
        Ok(self
            .partitions(&RESULTS)
            .await?
            .into_iter()
            .filter(|p| p.to <= cutoff)
            .collect())
    }

    /// Deletes up to `batch` results checked before `cutoff` where whole days cannot be
    /// dropped: SQLite's table, or PostgreSQL's legacy partition (day partitions are left to
    /// [`Self::drop_partition`]). Returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_checks(&self, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let sql = if backend == DatabaseBackend::Postgres {
            let legacy = self
                .partitions(&RESULTS)
                .await?
                .into_iter()
                .find(|p| !p.is_day() && p.from.is_none_or(|f| f < cutoff));
            let Some(legacy) = legacy else {
                return Ok(0);
            };
            format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} \
                 WHERE checked_at < $1 LIMIT $2))",
                t = legacy.name
            )
        } else {
            "DELETE FROM health_checks WHERE rowid IN (SELECT rowid FROM health_checks \
             WHERE checked_at < $1 ORDER BY checked_at LIMIT $2)"
                .to_owned()
        };
        let txn = crate::store::begin_all_tenants(&self.db, true).await?;
        let deleted = txn
            .execute_raw(statement(
                backend,
                &sql,
                [cutoff.into(), (batch as i64).into()],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(deleted)
    }

    /// Deletes up to `batch` daily summaries of days before `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_summaries(&self, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let sql = if backend == DatabaseBackend::Postgres {
            "DELETE FROM health_summaries_daily WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM health_summaries_daily WHERE day < $1 LIMIT $2))"
        } else {
            "DELETE FROM health_summaries_daily WHERE rowid IN (SELECT rowid \
             FROM health_summaries_daily WHERE day < $1 LIMIT $2)"
        };
        let txn = crate::store::begin_all_tenants(&self.db, true).await?;
        let deleted = txn
            .execute_raw(statement(
                backend,
                sql,
                [cutoff.into(), (batch as i64).into()],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(deleted)
    }
}
