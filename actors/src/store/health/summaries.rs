//! Hourly summaries: per integration and hour, the number of checks and failures and the
//! latency percentiles, which outlive the raw results they were made from.
//!
//! An hour is summarised by one statement that reads the hour once: on PostgreSQL a `GROUP
//! BY` with `percentile_disc` (the hour's pages found through the partition's BRIN), on
//! SQLite window functions. Both give the nearest-rank percentile: the ⌈q·n⌉-th smallest
//! latency. Results carrying folded checks (`raw_history = "changes"`) add those checks, so a
//! summary is the same whichever way the hour was stored.
//!
//! `health_summary_hours` records each hour done (empty ones too): the next hour is one
//! index probe after the newest, and retention can tell which dropped hours were never
//! summarised.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::health_summary;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::statement;
use crate::error::CatalogError;
use crate::store::{MAX_PAGE_SIZE, Page, SystemStore, TenantStore};

/// Memory for the one sort of an hour's results (per summariser transaction): at 12 million
/// rows an hour a smaller sort spills to disk and takes twice as long.
const SUMMARY_WORK_MEM: &str = "256MB";

const UPSERT: &str = "ON CONFLICT (integration_id, hour) DO UPDATE SET \
     tenant_id = excluded.tenant_id, checks = excluded.checks, failures = excluded.failures, \
     latency_p50_ms = excluded.latency_p50_ms, latency_p95_ms = excluded.latency_p95_ms, \
     latency_p99_ms = excluded.latency_p99_ms, latency_max_ms = excluded.latency_max_ms";

const COLUMNS: &str = "integration_id, hour, tenant_id, checks, failures, latency_p50_ms, \
     latency_p95_ms, latency_p99_ms, latency_max_ms";

/// One hour on PostgreSQL: results stored one by one, then the checks folded into others.
fn summarize_postgres() -> String {
    format!(
        "INSERT INTO health_summaries ({COLUMNS}) \
         SELECT integration_id, $1, tenant_id, checks, failures, p[1], p[2], p[3], max_ms FROM ( \
           SELECT integration_id, min(tenant_id) AS tenant_id, count(*) AS checks, \
             count(*) FILTER (WHERE failed) AS failures, \
             percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency) AS p, \
             max(latency) AS max_ms \
           FROM ( \
             SELECT integration_id, tenant_id, status = 'unhealthy' AS failed, \
               latency_ms AS latency \
             FROM health_checks \
             WHERE checked_at >= $1 AND checked_at < $2 AND status <> 'rate_limited' \
             UNION ALL \
             SELECT h.integration_id, h.tenant_id, \
               f.ord <= (h.folded->>'failures')::int8, f.value::int8 \
             FROM health_checks h \
             CROSS JOIN LATERAL json_array_elements_text(h.folded->'latencies') \
               WITH ORDINALITY AS f (value, ord) \
             WHERE h.checked_at >= $1 AND h.checked_at < $2 AND h.folded IS NOT NULL \
           ) c GROUP BY integration_id \
         ) s {UPSERT}"
    )
}

/// One hour on SQLite: each check ranked within its integration, the rank that reaches
/// ⌈q·n⌉ picked in integer arithmetic.
fn summarize_sqlite() -> String {
    let pick = |q: u32| format!("min(CASE WHEN rn * 100 >= {q} * n THEN latency END)");
    format!(
        "INSERT INTO health_summaries ({COLUMNS}) \
         SELECT integration_id, $1, min(tenant_id), count(*), sum(failed), {}, {}, {}, \
           max(latency) FROM ( \
           SELECT integration_id, tenant_id, failed, latency, \
             row_number() OVER (PARTITION BY integration_id ORDER BY latency) AS rn, \
             count(*) OVER (PARTITION BY integration_id) AS n \
           FROM ( \
             SELECT integration_id, tenant_id, status = 'unhealthy' AS failed, \
               latency_ms AS latency \
             FROM health_checks \
             WHERE checked_at >= $1 AND checked_at < $2 AND status <> 'rate_limited' \
             UNION ALL \
             SELECT h.integration_id, h.tenant_id, \
               f.key < json_extract(h.folded, '$.failures'), f.value \
             FROM health_checks h, json_each(h.folded, '$.latencies') f \
             WHERE h.checked_at >= $1 AND h.checked_at < $2 AND h.folded IS NOT NULL \
           ) \
         ) WHERE true GROUP BY integration_id {UPSERT}",
        pick(50),
        pick(95),
        pick(99),
    )
}

impl SystemStore {
    /// The end of the newest hour summarised (empty hours count), if any was.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn summarized_until(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(statement(
                backend,
                "SELECT max(hour) AS hour FROM health_summary_hours",
                [],
            ))
            .await?;
        let newest = match row {
            Some(row) => row.try_get::<Option<DateTime<Utc>>>("", "hour")?,
            None => None,
        };
        Ok(newest.map(|h| h + ChronoDuration::hours(1)))
    }

    /// The next hour to summarise: the one after the newest summarised, or the first hour with
    /// results when none was; never before `floor`, and `None` unless it starts before
    /// `until`.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn next_hour_to_summarize(
        &self,
        floor: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        let start = match self.summarized_until().await? {
            Some(done) => done,
            None => match self.oldest_check().await? {
                Some(oldest) => super::start_of_hour(oldest),
                None => return Ok(None),
            },
        };
        let next = start.max(super::start_of_hour(floor));
        Ok((next < until).then_some(next))
    }

    /// Summarises one hour of results per integration (checks, failures, latency
    /// percentiles) in one statement, and records the hour as done. Summarising an hour again
    /// replaces its summaries. Returns the summaries written.
    ///
    /// # Errors
    /// [`DbErr`]; nothing is written then.
    pub async fn summarize_hour(&self, hour: DateTime<Utc>) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let end = hour + ChronoDuration::hours(1);
        let txn = crate::store::begin_all_tenants(&self.db, true).await?;
        let sql = if backend == DatabaseBackend::Postgres {
            // The hour is a run of pages found by the BRIN; a plain index scan of the history
            // index would visit them in integration order, one random read per row.
            txn.execute_unprepared(&format!(
                "SET LOCAL work_mem = '{SUMMARY_WORK_MEM}'; SET LOCAL enable_indexscan = off"
            ))
            .await?;
            summarize_postgres()
        } else {
            summarize_sqlite()
        };
        let written = txn
            .execute_raw(statement(backend, &sql, [hour.into(), end.into()]))
            .await?
            .rows_affected();
        txn.execute_raw(statement(
            backend,
            "INSERT INTO health_summary_hours (hour, summaries, summarized_at) \
             VALUES ($1, $2, $3) ON CONFLICT (hour) DO UPDATE SET \
             summaries = excluded.summaries, summarized_at = excluded.summarized_at",
            [hour.into(), (written as i64).into(), Utc::now().into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(written)
    }

    /// Forgets the record of hours summarised before `cutoff` (their summaries are rolled up
    /// or gone); the newest record is always kept, so the summariser knows where it stands.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_summarized_hours(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await?;
        let deleted = txn
            .execute_raw(statement(
                backend,
                "DELETE FROM health_summary_hours WHERE hour < $1 \
                 AND hour < (SELECT max(hour) FROM health_summary_hours)",
                [cutoff.into()],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(deleted)
    }
}

/// Which summaries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Hourly summaries, kept until they are rolled up into days.
    Hour,
    /// Daily summaries, kept for the summary retention.
    Day,
}

/// A page of summaries, oldest first.
#[derive(Debug, Clone)]
pub struct SummaryQuery {
    pub granularity: Granularity,
    /// Only periods starting at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only periods starting after this one (the previous page's cursor).
    pub after: Option<DateTime<Utc>>,
    pub limit: u64,
}

/// One summarised period (an hour or a day) of an integration's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub start: DateTime<Utc>,
    pub checks: i64,
    pub failures: i64,
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
    pub latency_max_ms: i64,
}

impl From<health_summary::Model> for Summary {
    fn from(m: health_summary::Model) -> Self {
        Self {
            start: m.hour,
            checks: m.checks,
            failures: m.failures,
            latency_p50_ms: m.latency_p50_ms,
            latency_p95_ms: m.latency_p95_ms,
            latency_p99_ms: m.latency_p99_ms,
            latency_max_ms: m.latency_max_ms,
        }
    }
}

impl From<health_summary::daily::Model> for Summary {
    fn from(m: health_summary::daily::Model) -> Self {
        Self {
            start: m.day,
            checks: m.checks,
            failures: m.failures,
            latency_p50_ms: m.latency_p50_ms,
            latency_p95_ms: m.latency_p95_ms,
            latency_p99_ms: m.latency_p99_ms,
            latency_max_ms: m.latency_max_ms,
        }
    }
}

impl TenantStore {
    /// A page of an integration's hourly or daily summaries, oldest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn health_summaries(
        &self,
        id: Uuid,
        query: &SummaryQuery,
    ) -> Result<Page<Summary, DateTime<Utc>>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let tenant = self.tenant.as_str();
        let rows: Vec<Summary> = match query.granularity {
            Granularity::Hour => {
                use health_summary::{Column, Entity};
                let mut select = Entity::find()
                    .filter(Column::TenantId.eq(tenant))
                    .filter(Column::IntegrationId.eq(id));
                if let Some(since) = query.since {
                    select = select.filter(Column::Hour.gte(since));
                }
                if let Some(after) = query.after {
                    select = select.filter(Column::Hour.gt(after));
                }
                let select = select.order_by_asc(Column::Hour).limit(limit + 1);
                let rows = self.read_all(select).await?;
                rows.into_iter().map(Summary::from).collect()
            }
            Granularity::Day => {
                use health_summary::daily::{Column, Entity};
                let mut select = Entity::find()
                    .filter(Column::TenantId.eq(tenant))
                    .filter(Column::IntegrationId.eq(id));
                if let Some(since) = query.since {
                    select = select.filter(Column::Day.gte(since));
                }
                if let Some(after) = query.after {
                    select = select.filter(Column::Day.gt(after));
                }
                let select = select.order_by_asc(Column::Day).limit(limit + 1);
                let rows = self.read_all(select).await?;
                rows.into_iter().map(Summary::from).collect()
            }
        };
        Ok(Page::from_rows(rows, limit, |s| s.start))
    }
}
