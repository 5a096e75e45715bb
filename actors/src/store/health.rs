//! Health results: the history and uptime a tenant reads, and the system-wide writes of the
//! health engine (batched results, status transitions, hourly summaries, retention).

use chrono::{DateTime, Duration as ChronoDuration, DurationRound, TimeDelta, Utc};
use entity::{health_check, health_summary, integration};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::{MAX_PAGE_SIZE, Page, Store, TenantStore};
use crate::error::CatalogError;
use crate::events::{NewEvent, StoredEvent};

/// One stored check result.
pub type CheckEntry = health_check::Model;

/// A check result to store.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub integration_id: Uuid,
    pub tenant_id: std::sync::Arc<str>,
    pub checked_at: DateTime<Utc>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub latency_ms: i64,
    pub error_message: Option<String>,
}

/// A status transition to store on the integration's row.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub integration_id: Uuid,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub checked_at: DateTime<Utc>,
}

/// Which results to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only results checked at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Start below this result id (the previous page's cursor).
    pub before: Option<i64>,
    pub limit: u64,
}

/// Share of checks that were not unhealthy over a window (degraded counts as up, rate-limit
/// pauses do not count), `None` without any check in it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Uptime {
    pub last_24h: Option<f64>,
    pub last_7d: Option<f64>,
    pub last_30d: Option<f64>,
}

impl TenantStore {
    /// A page of an integration's check results, newest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn health_history(
        &self,
        id: Uuid,
        query: &HistoryQuery,
    ) -> Result<Page<CheckEntry, i64>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let mut select = health_check::Entity::find()
            .filter(health_check::Column::TenantId.eq(self.tenant.as_str()))
            .filter(health_check::Column::IntegrationId.eq(id));
        if let Some(since) = query.since {
            select = select.filter(health_check::Column::CheckedAt.gte(since));
        }
        if let Some(before) = query.before {
            select = select.filter(health_check::Column::Id.lt(before));
        }
        let rows = self
            .read_all(
                select
                    .order_by_desc(health_check::Column::Id)
                    .limit(limit + 1),
            )
            .await?;
        Ok(Page::from_rows(rows, limit, |r| r.id))
    }

    /// Uptime over the last 24 hours, 7 days and 30 days: hourly summaries for the hours they
    /// cover, raw results after that.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn uptime(&self, id: Uuid, now: DateTime<Utc>) -> Result<Uptime, CatalogError> {
        let txn = self.begin(false).await?;
        let window = |days: i64| now - ChronoDuration::days(days);
        let summaries = health_summary::Entity::find()
            .filter(health_summary::Column::TenantId.eq(self.tenant.as_str()))
            .filter(health_summary::Column::IntegrationId.eq(id))
            .filter(health_summary::Column::Hour.gte(window(30)))
            .all(&txn)
            .await?;
        let summarized_until = summaries
            .iter()
            .map(|s| s.hour + ChronoDuration::hours(1))
            .max()
            .unwrap_or(window(30));
        let raw: Vec<(String, DateTime<Utc>)> = health_check::Entity::find()
            .select_only()
            .column(health_check::Column::Status)
            .column(health_check::Column::CheckedAt)
            .filter(health_check::Column::TenantId.eq(self.tenant.as_str()))
            .filter(health_check::Column::IntegrationId.eq(id))
            .filter(health_check::Column::CheckedAt.gte(summarized_until.max(window(30))))
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        let ratio = |start: DateTime<Utc>| {
            let (mut checks, mut failures) = (0i64, 0i64);
            for s in summaries.iter().filter(|s| s.hour >= start) {
                checks += s.checks;
                failures += s.failures;
            }
            for (status, _) in raw.iter().filter(|(s, at)| *at >= start && counts(s)) {
                checks += 1;
                failures += i64::from(status == UNHEALTHY);
            }
            (checks > 0).then(|| (checks - failures) as f64 / checks as f64)
        };
        Ok(Uptime {
            last_24h: ratio(window(1)),
            last_7d: ratio(window(7)),
            last_30d: ratio(window(30)),
        })
    }
}

impl Store {
    /// The health engine's view: every tenant, for system tasks only (never reached from a
    /// request).
    pub fn system(&self) -> SystemStore {
        SystemStore {
            db: self.db.clone(),
        }
    }
}

/// System-wide access for the health engine. On PostgreSQL its transactions set
/// `stella.all_tenants`, the one way past the row-level-security policies.
#[derive(Clone, Debug)]
pub struct SystemStore {
    db: DatabaseConnection,
}

/// Rows per statement on SQLite: results (seven parameters each), events (six) and status
/// rows (four) stay under its limit of 32,766 bound parameters.
const ROWS_PER_INSERT: usize = 1000;

/// Each integration's last transition in `statuses`: the one its row must show.
fn last_per_integration(statuses: &[StatusRow]) -> Vec<&StatusRow> {
    let mut latest: Vec<&StatusRow> = Vec::with_capacity(statuses.len());
    let mut seen = std::collections::HashSet::with_capacity(statuses.len());
    for s in statuses.iter().rev() {
        if seen.insert(s.integration_id) {
            latest.push(s);
        }
    }
    latest
}

/// Writes the integrations' latest statuses on SQLite, a chunk of rows per statement: a fleet
/// starting up moves every integration from `unknown` at once, and one `UPDATE` per row would
/// make the writer the bottleneck. (PostgreSQL takes one statement over arrays, in
/// [`super::bulk`].)
async fn update_statuses(txn: &DatabaseTransaction, latest: &[&StatusRow]) -> Result<(), DbErr> {
    for chunk in latest.chunks(ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for s in chunk {
            values.extend([
                s.integration_id.into(),
                s.status.into(),
                s.reason.into(),
                s.checked_at.into(),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        // SQLite names a VALUES list's columns column1..column4.
        let sql = format!(
            "UPDATE integrations SET status = v.column2, status_reason = v.column3, \
             last_checked_at = v.column4 \
             FROM (VALUES {rows}) AS v WHERE integrations.id = v.column1"
        );
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

impl SystemStore {
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        super::begin_all_tenants(&self.db, false).await
    }

    /// A page of live integrations of every tenant, by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn live_integrations(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<integration::Model>, DbErr> {
        let mut select =
            integration::Entity::find().filter(integration::Column::DeletedAt.is_null());
        if let Some(after) = after {
            select = select.filter(integration::Column::Id.gt(after));
        }
        let txn = self.begin().await?;
        let rows = select
            .order_by_asc(integration::Column::Id)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows)
    }

    /// A page of live integrations of one provider type, by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn live_integrations_of_type(
        &self,
        provider_type: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<integration::Model>, DbErr> {
        let mut select = integration::Entity::find()
            .filter(integration::Column::DeletedAt.is_null())
            .filter(integration::Column::ProviderType.eq(provider_type));
        if let Some(after) = after {
            select = select.filter(integration::Column::Id.gt(after));
        }
        let txn = self.begin().await?;
        let rows = select
            .order_by_asc(integration::Column::Id)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows)
    }

    /// Stores a batch of results, status transitions and the events they gave in one
    /// transaction; returns the events as stored. On PostgreSQL each table takes one statement
    /// over arrays ([`super::bulk`]); elsewhere multi-row statements of up to 1,000 rows.
    ///
    /// # Errors
    /// [`DbErr`]; nothing is stored then, and the caller retries the whole batch.
    pub async fn write_results(
        &self,
        checks: &[CheckRow],
        statuses: &[StatusRow],
        events: &[NewEvent],
    ) -> Result<Vec<StoredEvent>, DbErr> {
        let latest = last_per_integration(statuses);
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let pool = self.db.get_postgres_connection_pool();
            return super::bulk::write_results(pool, checks, &latest, events).await;
        }
        let txn = self.begin().await?;
        // Chunked: one statement binds at most 32,766 parameters on SQLite, and a batch can be
        // larger than that (a configured writer batch, or the events of one tick after a mass
        // outage).
        for chunk in checks.chunks(ROWS_PER_INSERT) {
            let rows = chunk.iter().map(|c| health_check::ActiveModel {
                id: NotSet,
                integration_id: Set(c.integration_id),
                tenant_id: Set(c.tenant_id.to_string()),
                checked_at: Set(c.checked_at),
                status: Set(c.status.to_owned()),
                reason: Set(c.reason.map(str::to_owned)),
                latency_ms: Set(c.latency_ms),
                error_message: Set(c.error_message.clone()),
            });
            health_check::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }
        update_statuses(&txn, &latest).await?;
        let mut stored = Vec::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_INSERT) {
            stored.extend(super::events::append(&txn, chunk).await?);
        }
        txn.commit().await?;
        Ok(stored)
    }

    /// Deletes up to `batch` results checked before `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_checks(&self, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, DbErr> {
        let txn = self.begin().await?;
        let ids: Vec<i64> = health_check::Entity::find()
            .select_only()
            .column(health_check::Column::Id)
            .filter(health_check::Column::CheckedAt.lt(cutoff))
            .order_by_asc(health_check::Column::CheckedAt)
            .limit(batch)
            .into_tuple()
            .all(&txn)
            .await?;
        let deleted = if ids.is_empty() {
            0
        } else {
            health_check::Entity::delete_many()
                .filter(health_check::Column::Id.is_in(ids))
                .exec(&txn)
                .await?
                .rows_affected
        };
        txn.commit().await?;
        Ok(deleted)
    }

    /// Deletes up to `batch` hourly summaries older than `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_summaries(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        let txn = self.begin().await?;
        let deleted = health_summary::Entity::delete_many()
            .filter(health_summary::Column::Hour.lt(cutoff))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(deleted)
    }

    /// The first hour after the newest summary that has results, if any.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn next_hour_to_summarize(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        let txn = self.begin().await?;
        let newest: Option<DateTime<Utc>> = health_summary::Entity::find()
            .select_only()
            .column(health_summary::Column::Hour)
            .order_by_desc(health_summary::Column::Hour)
            .limit(1)
            .into_tuple()
            .one(&txn)
            .await?;
        // The hour of the first result after the newest summary: empty hours are skipped.
        let mut first = health_check::Entity::find()
            .select_only()
            .column(health_check::Column::CheckedAt)
            .order_by_asc(health_check::Column::CheckedAt)
            .limit(1);
        if let Some(hour) = newest {
            first =
                first.filter(health_check::Column::CheckedAt.gte(hour + ChronoDuration::hours(1)));
        }
        let next = first
            .into_tuple::<DateTime<Utc>>()
            .one(&txn)
            .await?
            .map(start_of_hour);
        txn.commit().await?;
        Ok(next)
    }

    /// Summarises one hour of results per integration (checks, failures, latency
    /// percentiles), reading them in pages of `page` rows. Returns the summaries written.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn summarize_hour(&self, hour: DateTime<Utc>, page: u64) -> Result<u64, DbErr> {
        let end = hour + ChronoDuration::hours(1);
        let mut after: Option<(Uuid, i64)> = None;
        let mut current: Option<Accumulator> = None;
        let mut written = 0;
        loop {
            let txn = self.begin().await?;
            let mut select = health_check::Entity::find()
                .select_only()
                .column(health_check::Column::IntegrationId)
                .column(health_check::Column::Id)
                .column(health_check::Column::TenantId)
                .column(health_check::Column::Status)
                .column(health_check::Column::LatencyMs)
                .filter(health_check::Column::CheckedAt.gte(hour))
                .filter(health_check::Column::CheckedAt.lt(end));
            if let Some((id, row)) = after {
                select = select.filter(
                    Condition::any()
                        .add(health_check::Column::IntegrationId.gt(id))
                        .add(
                            Condition::all()
                                .add(health_check::Column::IntegrationId.eq(id))
                                .add(health_check::Column::Id.gt(row)),
                        ),
                );
            }
            let rows: Vec<(Uuid, i64, String, String, i64)> = select
                .order_by_asc(health_check::Column::IntegrationId)
                .order_by_asc(health_check::Column::Id)
                .limit(page)
                .into_tuple()
                .all(&txn)
                .await?;
            let mut finished = Vec::new();
            for (integration_id, row_id, tenant, status, latency) in &rows {
                if current
                    .as_ref()
                    .is_some_and(|a| a.integration_id != *integration_id)
                {
                    finished.extend(current.take());
                }
                let acc = current
                    .get_or_insert_with(|| Accumulator::new(*integration_id, tenant.clone()));
                acc.add(status, *latency);
                after = Some((*integration_id, *row_id));
            }
            let last_page = (rows.len() as u64) < page;
            if last_page {
                finished.extend(current.take());
            }
            for acc in finished {
                upsert_summary(&txn, acc.finish(hour)).await?;
                written += 1;
            }
            txn.commit().await?;
            if last_page {
                return Ok(written);
            }
        }
    }
}

async fn upsert_summary(txn: &DatabaseTransaction, s: health_summary::Model) -> Result<(), DbErr> {
    let row = health_summary::ActiveModel {
        integration_id: Set(s.integration_id),
        hour: Set(s.hour),
        tenant_id: Set(s.tenant_id),
        checks: Set(s.checks),
        failures: Set(s.failures),
        latency_p50_ms: Set(s.latency_p50_ms),
        latency_p95_ms: Set(s.latency_p95_ms),
        latency_p99_ms: Set(s.latency_p99_ms),
        latency_max_ms: Set(s.latency_max_ms),
    };
    health_summary::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                health_summary::Column::IntegrationId,
                health_summary::Column::Hour,
            ])
            .update_columns([
                health_summary::Column::Checks,
                health_summary::Column::Failures,
                health_summary::Column::LatencyP50Ms,
                health_summary::Column::LatencyP95Ms,
                health_summary::Column::LatencyP99Ms,
                health_summary::Column::LatencyMaxMs,
            ])
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

const UNHEALTHY: &str = "unhealthy";

/// Whether a stored result counts towards uptime: a rate-limit pause is neither up nor down.
fn counts(status: &str) -> bool {
    status != "rate_limited"
}

/// The start of the hour `t` falls in.
pub fn start_of_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

struct Accumulator {
    integration_id: Uuid,
    tenant_id: String,
    failures: i64,
    latencies: Vec<i64>,
}

impl Accumulator {
    fn new(integration_id: Uuid, tenant_id: String) -> Self {
        Self {
            integration_id,
            tenant_id,
            failures: 0,
            latencies: Vec::new(),
        }
    }

    fn add(&mut self, status: &str, latency: i64) {
        if counts(status) {
            self.failures += i64::from(status == UNHEALTHY);
            self.latencies.push(latency);
        }
    }

    fn finish(mut self, hour: DateTime<Utc>) -> health_summary::Model {
        self.latencies.sort_unstable();
        let pick = |q: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return 0;
            }
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i]
        };
        health_summary::Model {
            integration_id: self.integration_id,
            hour,
            tenant_id: self.tenant_id,
            checks: self.latencies.len() as i64,
            failures: self.failures,
            latency_p50_ms: pick(0.50),
            latency_p95_ms: pick(0.95),
            latency_p99_ms: pick(0.99),
            latency_max_ms: *self.latencies.last().unwrap_or(&0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use crate::tenant::TenantId;

    fn row(
        id: Uuid,
        tenant: &str,
        at: DateTime<Utc>,
        status: &'static str,
        latency: i64,
    ) -> CheckRow {
        CheckRow {
            integration_id: id,
            tenant_id: tenant.into(),
            checked_at: at,
            status,
            reason: (status != "healthy").then_some("timeout"),
            latency_ms: latency,
            error_message: None,
        }
    }

    #[tokio::test]
    async fn history_is_per_tenant_newest_first_and_pages() {
        let store = testing::store().await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t0 = Utc::now() - ChronoDuration::minutes(10);
        let rows: Vec<_> = (0..5)
            .map(|i| row(a, "ta", t0 + ChronoDuration::minutes(i), "healthy", i))
            .chain([row(b, "tb", t0, "unhealthy", 9)])
            .collect();
        store.system().write_results(&rows, &[], &[]).await.unwrap();
        let ta = store.tenant(TenantId::new("ta").unwrap());
        let page = ta
            .health_history(
                a,
                &HistoryQuery {
                    limit: 3,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let latencies: Vec<i64> = page.items.iter().map(|r| r.latency_ms).collect();
        assert_eq!(latencies, [4, 3, 2]);
        let next = ta
            .health_history(
                a,
                &HistoryQuery {
                    before: page.next,
                    limit: 3,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(next.items.len(), 2);
        assert!(next.next.is_none());
        let since = ta
            .health_history(
                a,
                &HistoryQuery {
                    since: Some(t0 + ChronoDuration::minutes(3)),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(since.items.len(), 2);
        // Tenant A cannot read B's history, even by id.
        let theirs = ta
            .health_history(
                b,
                &HistoryQuery {
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(theirs.items.is_empty());
    }

    #[tokio::test]
    async fn summaries_retention_and_uptime() {
        let store = testing::store().await;
        let system = store.system();
        let id = Uuid::now_v7();
        let now = Utc::now();
        let hour = start_of_hour(now) - ChronoDuration::hours(30);
        // 100 results in one old hour, 10 of them failures, latencies 1..=100.
        let rows: Vec<_> = (1..=100)
            .map(|i| {
                let status = if i % 10 == 0 { "unhealthy" } else { "healthy" };
                row(id, "t", hour + ChronoDuration::seconds(i * 30), status, i)
            })
            .collect();
        system.write_results(&rows, &[], &[]).await.unwrap();
        // And 4 recent ones, all healthy.
        let recent: Vec<_> = (0..4)
            .map(|i| row(id, "t", now - ChronoDuration::minutes(i), "healthy", 5))
            .collect();
        system.write_results(&recent, &[], &[]).await.unwrap();

        assert_eq!(system.next_hour_to_summarize().await.unwrap(), Some(hour));
        assert_eq!(
            system.summarize_hour(hour, 7).await.unwrap(),
            1,
            "pages of 7 rows"
        );
        // Empty hours are skipped: the next hour with results is the current one.
        assert_eq!(
            system.next_hour_to_summarize().await.unwrap(),
            Some(start_of_hour(now - ChronoDuration::minutes(3)))
        );
        let txn = system.begin().await.unwrap();
        let s = health_summary::Entity::find()
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        drop(txn);
        assert_eq!((s.checks, s.failures), (100, 10));
        assert_eq!(
            (
                s.latency_p50_ms,
                s.latency_p95_ms,
                s.latency_p99_ms,
                s.latency_max_ms
            ),
            (50, 95, 99, 100)
        );

        // Raw results of the summarised hour can go; uptime still counts them.
        let pruned = system
            .prune_checks(hour + ChronoDuration::hours(1), 30)
            .await
            .unwrap();
        assert_eq!(pruned, 30, "prunes in batches");
        while system
            .prune_checks(hour + ChronoDuration::hours(1), 30)
            .await
            .unwrap()
            > 0
        {}
        let uptime = store
            .tenant(TenantId::new("t").unwrap())
            .uptime(id, now)
            .await
            .unwrap();
        assert_eq!(uptime.last_24h, Some(1.0));
        assert_eq!(uptime.last_7d, Some(94.0 / 104.0));
        assert_eq!(uptime.last_30d, uptime.last_7d);
        assert_eq!(system.prune_summaries(now).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_batch_past_the_bind_parameter_limits_is_written_whole_and_in_order() {
        let store = testing::store().await;
        let id = Uuid::now_v7();
        let t0 = Utc::now() - ChronoDuration::hours(1);
        // 5,000 results bind 35,000 parameters (over SQLite's 32,766); 12,000 events 72,000
        // (over PostgreSQL's 65,535): a mass outage's reminders can fall due in one tick.
        let checks: Vec<_> = (0..5_000)
            .map(|i| row(id, "t", t0 + ChronoDuration::milliseconds(i), "healthy", i))
            .collect();
        let events: Vec<_> = (0..12_000)
            .map(|i| {
                crate::events::NewEvent::new(
                    crate::events::EventKind::HealthReminder,
                    "t".into(),
                    Some(id),
                    t0,
                    serde_json::json!({ "reminder": i }),
                )
            })
            .collect();
        let stored = store
            .system()
            .write_results(&checks, &[], &events)
            .await
            .unwrap();
        assert_eq!(stored.len(), 12_000);
        assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq));
        let order: Vec<_> = stored.iter().map(|e| e.id).collect();
        let sent: Vec<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(order, sent, "events keep their order across statements");
        use sea_orm::PaginatorTrait;
        let txn = store.system().begin().await.unwrap();
        let written = health_check::Entity::find()
            .filter(health_check::Column::IntegrationId.eq(id))
            .count(&txn)
            .await
            .unwrap();
        assert_eq!(written, 5_000);
    }

    #[tokio::test]
    async fn transitions_update_the_status_rows_in_one_statement_last_one_wins() {
        let store = testing::store().await;
        let (catalog, _h) = crate::Catalog::start(store.clone(), 1, Default::default())
            .await
            .unwrap();
        let t = TenantId::new("t").unwrap();
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            let new = crate::NewIntegration {
                provider_type: "inmemory".into(),
                name: name.into(),
                config: Default::default(),
                auth_ref_uri: None,
            };
            ids.push(catalog.create(&t, "x", new).await.unwrap().id);
        }
        let at = (Utc::now() - ChronoDuration::seconds(5))
            .duration_trunc(TimeDelta::milliseconds(1))
            .unwrap();
        let row = |i: usize, status, reason, secs| StatusRow {
            integration_id: ids[i],
            status,
            reason,
            checked_at: at + ChronoDuration::seconds(secs),
        };
        store
            .system()
            .write_results(
                &[],
                &[
                    row(0, "degraded", Some("timeout"), 0),
                    row(1, "healthy", None, 0),
                    row(0, "unhealthy", Some("timeout"), 1),
                    row(1, "degraded", Some("rate_limited"), 2),
                    row(1, "healthy", None, 3),
                ],
                &[],
            )
            .await
            .unwrap();
        let tenant = store.tenant(t);
        let read = |id| {
            let tenant = tenant.clone();
            async move { tenant.integration_get(id).await.unwrap() }
        };
        let a = read(ids[0]).await;
        assert_eq!(
            (a.status.as_str(), a.status_reason.as_deref()),
            ("unhealthy", Some("timeout"))
        );
        assert_eq!(a.last_checked_at, Some(at + ChronoDuration::seconds(1)));
        assert_eq!(a.version, 1, "status is not a configuration change");
        let b = read(ids[1]).await;
        assert_eq!((b.status.as_str(), b.status_reason), ("healthy", None));
        assert_eq!(b.last_checked_at, Some(at + ChronoDuration::seconds(3)));
        let c = read(ids[2]).await;
        assert_eq!((c.status.as_str(), c.last_checked_at), ("unknown", None));
        catalog.stop();
    }
}
