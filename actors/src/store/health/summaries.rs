//! Hourly summaries: per integration and hour, the number of checks and failures and the
//! latency percentiles, which outlive the raw results they were made from.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::{health_check, health_summary};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{UNHEALTHY, counts, start_of_hour};
use crate::store::SystemStore;

impl SystemStore {
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
