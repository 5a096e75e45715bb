//! A tenant's uptime: the share of checks that were not unhealthy over the last 24 hours, 7
//! and 30 days, from the hourly summaries where they exist and the raw results after them.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::{health_check, health_summary};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{UNHEALTHY, counts};
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

impl TenantStore {
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
