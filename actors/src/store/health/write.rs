//! The result writer's batches: check results, status transitions (an integration's row
//! shows its last one) and the events they gave, in one transaction. This is the portable
//! path; PostgreSQL's is [`super::bulk`].

use entity::health_check;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait,
    Statement,
};

use super::{CheckRow, StatusRow};
use crate::events::{NewEvent, StoredEvent};
use crate::store::SystemStore;
use crate::store::cluster::Fence;

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
    /// Stores a batch of results, status transitions and the events they gave in one
    /// transaction; returns the events as stored. On PostgreSQL each table takes one statement
    /// over arrays (`store::health::bulk`); elsewhere multi-row statements of up to 1,000 rows.
    ///
    /// # Errors
    /// [`DbErr`]; nothing is stored then, and the caller retries the whole batch.
    pub async fn write_results(
        &self,
        checks: &[CheckRow],
        statuses: &[StatusRow],
        events: &[NewEvent],
    ) -> Result<Vec<StoredEvent>, DbErr> {
        self.write_results_fenced(checks, statuses, events, None)
            .await
    }

    /// [`SystemStore::write_results`], in a cluster: rows whose shard lease this replica no
    /// longer holds under the epoch in `fence` are left out, checked in the same transaction
    /// (PostgreSQL only; a cluster never runs on SQLite).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn write_results_fenced(
        &self,
        checks: &[CheckRow],
        statuses: &[StatusRow],
        events: &[NewEvent],
        fence: Option<&Fence>,
    ) -> Result<Vec<StoredEvent>, DbErr> {
        let latest = last_per_integration(statuses);
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let pool = self.db.get_postgres_connection_pool();
            return super::bulk::write_results(pool, checks, &latest, events, fence).await;
        }
        let txn = self.begin().await?;
        // Chunked: one statement binds at most 32,766 parameters on SQLite, and a batch can be
        // larger than that (a configured writer batch, or the events of one tick after a mass
        // outage).
        for chunk in checks.chunks(ROWS_PER_INSERT) {
            let rows = chunk.iter().map(|c| health_check::ActiveModel {
                integration_id: Set(c.integration_id),
                tenant_id: Set(c.tenant_id.to_string()),
                checked_at: Set(c.checked_at),
                status: Set(c.status.to_owned()),
                reason: Set(c.reason.map(str::to_owned)),
                latency_ms: Set(c.latency_ms),
                error_message: Set(c.error_message.clone()),
                folded: Set(c.folded.as_ref().map(|f| f.to_json())),
            });
            health_check::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }
        update_statuses(&txn, &latest).await?;
        let mut stored = Vec::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_INSERT) {
            stored.extend(crate::store::events::append(&txn, chunk).await?);
        }
        txn.commit().await?;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as ChronoDuration, DurationRound, TimeDelta, Utc};
    use sea_orm::{ColumnTrait, QueryFilter};
    use uuid::Uuid;

    use super::*;
    use crate::store::health::tests::row;
    use crate::store::testing;
    use crate::tenant::TenantId;

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
