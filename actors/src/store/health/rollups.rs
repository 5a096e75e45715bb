//! Hourly summaries rolled up into daily ones once they are old enough, then removed: on
//! PostgreSQL a day of hourly summaries is a partition, dropped whole.
//!
//! A day's checks, failures and largest latency are sums and a maximum of the hourly ones, so
//! exact. Its percentiles are the hourly ones' mean weighted by each hour's checks, rounded to
//! the nearest millisecond: an estimate, since the raw results are gone by then (integer
//! arithmetic, so both backends give the same numbers).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};

use super::partitions::SUMMARIES;
use super::{start_of_day, statement};
use crate::store::SystemStore;

/// Rows per delete from a table that is not one day per partition.
const DELETE_BATCH: i64 = 10_000;

fn weighted(column: &str) -> String {
    format!(
        "CASE WHEN sum(checks) > 0 THEN (CAST(sum({column} * checks) AS BIGINT) \
         + CAST(sum(checks) AS BIGINT) / 2) / CAST(sum(checks) AS BIGINT) ELSE 0 END"
    )
}

fn roll_up_sql() -> String {
    format!(
        "INSERT INTO health_summaries_daily (integration_id, day, tenant_id, checks, failures, \
         latency_p50_ms, latency_p95_ms, latency_p99_ms, latency_max_ms) \
         SELECT integration_id, $1, min(tenant_id), sum(checks), sum(failures), {}, {}, {}, \
         max(latency_max_ms) FROM health_summaries WHERE hour >= $1 AND hour < $2 \
         GROUP BY integration_id \
         ON CONFLICT (integration_id, day) DO UPDATE SET tenant_id = excluded.tenant_id, \
         checks = excluded.checks, failures = excluded.failures, \
         latency_p50_ms = excluded.latency_p50_ms, latency_p95_ms = excluded.latency_p95_ms, \
         latency_p99_ms = excluded.latency_p99_ms, latency_max_ms = excluded.latency_max_ms",
        weighted("latency_p50_ms"),
        weighted("latency_p95_ms"),
        weighted("latency_p99_ms"),
    )
}

impl SystemStore {
    /// Rolls up the hourly summaries of `day` into daily ones (again, if it was); returns the
    /// daily summaries written.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn roll_up_day(&self, day: DateTime<Utc>) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let day = start_of_day(day);
        let txn = crate::store::begin_all_tenants(&self.db, true).await?;
        let written = txn
            .execute_raw(statement(
                backend,
                &roll_up_sql(),
                [day.into(), (day + ChronoDuration::days(1)).into()],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(written)
    }

    /// Rolls up every day of hourly summaries that ends at or before `horizon`, oldest first,
    /// and removes its hourly rows; returns the days rolled up.
    ///
    /// # Errors
    /// [`DbErr`]; the days before the failing one are done.
    pub async fn roll_up(&self, horizon: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, DbErr> {
        let mut days = Vec::new();
        loop {
            let Some(day) = self.oldest_hourly_day(horizon).await? else {
                return Ok(days);
            };
            self.roll_up_day(day).await?;
            self.remove_hourly_day(day).await?;
            days.push(day);
        }
    }

    /// The oldest day with hourly summaries, if it ends at or before `horizon`. On PostgreSQL
    /// a day partition counts even when empty (so that it is dropped), and an empty legacy
    /// partition past `horizon` is dropped here.
    async fn oldest_hourly_day(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        let due = |day: DateTime<Utc>| day + ChronoDuration::days(1) <= horizon;
        if !self.partitioned() {
            return Ok(self
                .min_hour("health_summaries")
                .await?
                .map(start_of_day)
                .filter(|d| due(*d)));
        }
        for p in self.partitions(&SUMMARIES).await? {
            if p.is_day() {
                return Ok(p.from.filter(|d| due(*d)));
            }
            match self.min_hour(&p.name).await? {
                Some(hour) => return Ok(Some(start_of_day(hour)).filter(|d| due(*d))),
                None if p.to <= horizon => {
                    self.drop_partition(&SUMMARIES, &p).await?;
                }
                None => {}
            }
        }
        Ok(None)
    }

    async fn min_hour(&self, table: &str) -> Result<Option<DateTime<Utc>>, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = crate::store::begin_all_tenants(&self.db, false).await?;
        let row = txn
            .query_one_raw(statement(
                backend,
                &format!("SELECT min(hour) AS oldest FROM {table}"),
                [],
            ))
            .await?;
        txn.commit().await?;
        match row {
            Some(row) => row.try_get::<Option<DateTime<Utc>>>("", "oldest"),
            None => Ok(None),
        }
    }

    /// Removes the hourly summaries of `day`: its partition on PostgreSQL, or its rows from
    /// the legacy partition or SQLite's table, a batch per transaction.
    async fn remove_hourly_day(&self, day: DateTime<Utc>) -> Result<(), DbErr> {
        let end = day + ChronoDuration::days(1);
        let backend = self.db.get_database_backend();
        let table = if backend == DatabaseBackend::Postgres {
            let partitions = self.partitions(&SUMMARIES).await?;
            if let Some(p) = partitions
                .iter()
                .find(|p| p.is_day() && p.from == Some(day))
            {
                self.drop_partition(&SUMMARIES, p).await?;
                return Ok(());
            }
            match partitions.into_iter().find(|p| !p.is_day()) {
                Some(legacy) => legacy.name,
                None => return Ok(()),
            }
        } else {
            "health_summaries".to_owned()
        };
        // A TID list on PostgreSQL: `ctid IN (…)` would be planned as a join over the table.
        let sql = if backend == DatabaseBackend::Postgres {
            format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
                 WHERE hour >= $1 AND hour < $2 LIMIT $3))"
            )
        } else {
            format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} \
                 WHERE hour >= $1 AND hour < $2 LIMIT $3)"
            )
        };
        loop {
            let txn = crate::store::begin_all_tenants(&self.db, true).await?;
            let deleted = txn
                .execute_raw(statement(
                    backend,
                    &sql,
                    [day.into(), end.into(), DELETE_BATCH.into()],
                ))
                .await?
                .rows_affected();
            txn.commit().await?;
            if deleted < DELETE_BATCH as u64 {
                return Ok(());
            }
        }
    }
}
