//! A tenant's uptime: the share of checks that were not unhealthy over the last 24 hours, 7
//! and 30 days, from the daily summaries, then the hourly ones after them, then the raw
//! results after those (with the checks they carry folded), and the checks a monitor holds
//! that are not stored yet. Each check is counted once, from exactly one of these.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::{health_check, health_summary};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{Folded, UNHEALTHY, counts};
use crate::error::CatalogError;
use crate::store::TenantStore;

/// Share of checks that were not unhealthy over a window (degraded counts as up, rate-limit
/// pauses do not count), `None` without any check in it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Uptime {
    pub last_24h: Option<f64>,
    pub last_7d: Option<f64>,
    pub last_30d: Option<f64>,
}

/// Checks made but not stored yet (with `raw_history = "changes"`, those a monitor folds
/// until its hour's sample is written): they fall in every window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub checks: i64,
    pub failures: i64,
}

/// Checks and failures in one period.
struct Tally {
    start: DateTime<Utc>,
    checks: i64,
    failures: i64,
}

impl TenantStore {
    /// Uptime over the last 24 hours, 7 days and 30 days.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn uptime(&self, id: Uuid, now: DateTime<Utc>) -> Result<Uptime, CatalogError> {
        self.uptime_with(id, now, Pending::default()).await
    }

    /// Uptime counting `pending` checks too: daily summaries for the days they cover, hourly
    /// summaries after them, raw results after those.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn uptime_with(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        pending: Pending,
    ) -> Result<Uptime, CatalogError> {
        let window = |days: i64| now - ChronoDuration::days(days);
        let tenant = self.tenant.as_str();
        let txn = self.begin(false).await?;
        let days: Vec<(DateTime<Utc>, i64, i64)> = {
            use health_summary::daily::{Column, Entity};
            Entity::find()
                .select_only()
                .columns([Column::Day, Column::Checks, Column::Failures])
                .filter(Column::TenantId.eq(tenant))
                .filter(Column::IntegrationId.eq(id))
                .filter(Column::Day.gte(window(30)))
                .into_tuple()
                .all(&txn)
                .await?
        };
        let hours: Vec<(DateTime<Utc>, i64, i64)> = {
            use health_summary::{Column, Entity};
            Entity::find()
                .select_only()
                .columns([Column::Hour, Column::Checks, Column::Failures])
                .filter(Column::TenantId.eq(tenant))
                .filter(Column::IntegrationId.eq(id))
                .filter(Column::Hour.gte(window(30)))
                .into_tuple()
                .all(&txn)
                .await?
        };
        let daily_until = days
            .iter()
            .map(|(day, ..)| *day + ChronoDuration::days(1))
            .max()
            .unwrap_or(window(30));
        let hours: Vec<_> = hours.into_iter().filter(|h| h.0 >= daily_until).collect();
        let summarized_until = hours
            .iter()
            .map(|(hour, ..)| *hour + ChronoDuration::hours(1))
            .max()
            .unwrap_or(daily_until)
            .max(daily_until);
        let raw: Vec<(String, DateTime<Utc>, Option<serde_json::Value>)> = {
            use health_check::{Column, Entity};
            Entity::find()
                .select_only()
                .columns([Column::Status, Column::CheckedAt, Column::Folded])
                .filter(Column::TenantId.eq(tenant))
                .filter(Column::IntegrationId.eq(id))
                .filter(Column::CheckedAt.gte(summarized_until.max(window(30))))
                .into_tuple()
                .all(&txn)
                .await?
        };
        txn.commit().await?;

        let mut tallies: Vec<Tally> = days
            .into_iter()
            .chain(hours)
            .map(|(start, checks, failures)| Tally {
                start,
                checks,
                failures,
            })
            .collect();
        for (status, at, folded) in raw {
            let mut tally = Tally {
                start: at,
                checks: i64::from(counts(&status)),
                failures: i64::from(status == UNHEALTHY),
            };
            if let Some(folded) = folded.as_ref().and_then(Folded::from_json) {
                tally.checks += folded.latencies.len() as i64;
                tally.failures += i64::from(folded.failures);
            }
            tallies.push(tally);
        }
        let ratio = |start: DateTime<Utc>| {
            let (mut checks, mut failures) = (pending.checks, pending.failures);
            for t in tallies.iter().filter(|t| t.start >= start) {
                checks += t.checks;
                failures += t.failures;
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
