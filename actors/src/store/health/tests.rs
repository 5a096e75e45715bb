//! The life of stored results across the parts of this module: summarised, pruned, still
//! counted in uptime; and the result row the other tests store.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::health_summary;
use sea_orm::EntityTrait;
use uuid::Uuid;

use super::{CheckRow, start_of_hour};
use crate::store::testing;
use crate::tenant::TenantId;

/// A result of `tenant`'s integration `id`; anything but healthy fails with a timeout.
pub(super) fn row(
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
