//! Summaries, roll-ups, retention, partitions, uptime and the upgrade from the unpartitioned
//! schema, on random data against a brute-force computation; the sample result row the other
//! modules' tests store. Every test runs on SQLite and, with `STELLA_TEST_DATABASE=postgres`,
//! on PostgreSQL as the unprivileged role row-level security applies to.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::health_summary;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use uuid::Uuid;

use super::partitions::{DAYS_AHEAD, RESULTS, SUMMARIES};
use super::{CheckRow, Folded, HistoryQuery, Pending, start_of_day, start_of_hour};
use crate::health::history::{self, HistoryPolicy};
use crate::store::{Store, testing};
use crate::tenant::TenantId;

/// A result of `tenant`'s integration `id`; anything but healthy fails with a timeout.
pub(crate) fn row(
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
        folded: None,
    }
}

const STATUSES: [&str; 5] = [
    "healthy",
    "healthy",
    "degraded",
    "unhealthy",
    "rate_limited",
];

/// Random results of `ids` in each hour of `hours`, a fifth of them carrying folded checks.
fn random_rows(
    rng: &mut StdRng,
    ids: &[(Uuid, &'static str)],
    hours: impl Iterator<Item = DateTime<Utc>>,
    max_per_hour: u32,
) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for hour in hours {
        for (id, tenant) in ids {
            for _ in 0..rng.random_range(0..=max_per_hour) {
                let at = hour + ChronoDuration::milliseconds(rng.random_range(0..3_600_000));
                let status = STATUSES[rng.random_range(0..STATUSES.len())];
                let mut r = row(*id, tenant, at, status, rng.random_range(0..500));
                if rng.random_bool(0.2) {
                    let mut folded = Folded::default();
                    for _ in 0..rng.random_range(1..6) {
                        let s = STATUSES[rng.random_range(0..STATUSES.len())];
                        folded.add(s, rng.random_range(0..500));
                    }
                    r.folded = Some(Box::new(folded));
                }
                rows.push(r);
            }
        }
    }
    rows
}

/// What a summary must say, computed the slow way: every check (folded ones too) that counts,
/// sorted, the nearest rank picked in integer arithmetic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    checks: i64,
    failures: i64,
    p50: i64,
    p95: i64,
    p99: i64,
    max: i64,
}

fn brute_force(rows: &[&CheckRow]) -> Option<Expected> {
    let mut latencies = Vec::new();
    let mut failures = 0;
    for r in rows {
        if super::counts(r.status) {
            latencies.push(r.latency_ms);
            failures += i64::from(r.status == "unhealthy");
        }
        if let Some(f) = &r.folded {
            latencies.extend(f.latencies.iter().map(|l| i64::from(*l)));
            failures += i64::from(f.failures);
        }
    }
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let n = latencies.len() as i64;
    let rank = |p: i64| latencies[(((p * n + 99) / 100).max(1) - 1) as usize];
    Some(Expected {
        checks: n,
        failures,
        p50: rank(50),
        p95: rank(95),
        p99: rank(99),
        max: latencies[latencies.len() - 1],
    })
}

async fn hourly(store: &Store) -> Vec<health_summary::Model> {
    let txn = store.system().begin().await.unwrap();
    health_summary::Entity::find()
        .order_by_asc(health_summary::Column::Hour)
        .order_by_asc(health_summary::Column::IntegrationId)
        .all(&txn)
        .await
        .unwrap()
}

async fn daily(store: &Store) -> Vec<health_summary::daily::Model> {
    let txn = store.system().begin().await.unwrap();
    health_summary::daily::Entity::find()
        .order_by_asc(health_summary::daily::Column::Day)
        .all(&txn)
        .await
        .unwrap()
}

fn integrations(n: usize) -> Vec<(Uuid, &'static str)> {
    (0..n)
        .map(|i| (Uuid::now_v7(), if i % 2 == 0 { "ta" } else { "tb" }))
        .collect()
}

#[tokio::test]
async fn hourly_summaries_and_daily_roll_ups_match_a_brute_force_computation() {
    let store = testing::store().await;
    let system = store.system();
    let mut rng = StdRng::seed_from_u64(20);
    let ids = integrations(6);
    let day = start_of_day(Utc::now()) - ChronoDuration::days(2);
    let hours: Vec<_> = (0..5).map(|h| day + ChronoDuration::hours(h * 5)).collect();
    let rows = random_rows(&mut rng, &ids, hours.iter().copied(), 14);
    for chunk in rows.chunks(37) {
        system.write_results(chunk, &[], &[]).await.unwrap();
    }
    for hour in &hours {
        system.summarize_hour(*hour).await.unwrap();
    }
    // Summarising again changes nothing.
    let first = hourly(&store).await;
    system.summarize_hour(hours[0]).await.unwrap();
    assert_eq!(hourly(&store).await, first);

    let mut expected_hours = BTreeMap::new();
    for (id, tenant) in &ids {
        for hour in &hours {
            let of: Vec<_> = rows
                .iter()
                .filter(|r| r.integration_id == *id && start_of_hour(r.checked_at) == *hour)
                .collect();
            if let Some(e) = brute_force(&of) {
                expected_hours.insert((*id, *hour), (tenant.to_string(), e));
            }
        }
    }
    let got: BTreeMap<_, _> = first
        .iter()
        .map(|s| {
            let e = Expected {
                checks: s.checks,
                failures: s.failures,
                p50: s.latency_p50_ms,
                p95: s.latency_p95_ms,
                p99: s.latency_p99_ms,
                max: s.latency_max_ms,
            };
            ((s.integration_id, s.hour), (s.tenant_id.clone(), e))
        })
        .collect();
    assert!(got.len() > 20, "enough summaries to mean something");
    assert_eq!(got, expected_hours);
    assert_eq!(
        system.summarized_until().await.unwrap(),
        Some(hours[4] + ChronoDuration::hours(1))
    );

    // The day rolled up: counts and maximum exact against the raw results, percentiles the
    // check-weighted mean of the hourly ones.
    assert_eq!(system.roll_up_day(day).await.unwrap(), ids.len() as u64);
    let days = daily(&store).await;
    for (id, tenant) in &ids {
        let of: Vec<_> = rows.iter().filter(|r| r.integration_id == *id).collect();
        let raw = brute_force(&of).unwrap();
        let hours: Vec<_> = expected_hours
            .iter()
            .filter(|((i, _), _)| i == id)
            .map(|(_, (_, e))| e)
            .collect();
        let weighted = |p: fn(&Expected) -> i64| {
            let total: i64 = hours.iter().map(|h| h.checks).sum();
            (hours.iter().map(|h| p(h) * h.checks).sum::<i64>() + total / 2) / total
        };
        let d = days.iter().find(|d| d.integration_id == *id).unwrap();
        assert_eq!(d.day, day);
        assert_eq!(d.tenant_id, *tenant);
        assert_eq!(
            (d.checks, d.failures, d.latency_max_ms),
            (raw.checks, raw.failures, raw.max)
        );
        assert_eq!(
            (d.latency_p50_ms, d.latency_p95_ms, d.latency_p99_ms),
            (
                weighted(|e| e.p50),
                weighted(|e| e.p95),
                weighted(|e| e.p99)
            )
        );
    }

    // Each tenant reads its own, page by page.
    let (id, tenant) = ids[1];
    let ta = store.tenant(TenantId::new(tenant).unwrap());
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = ta
            .health_summaries(
                id,
                &super::SummaryQuery {
                    granularity: super::Granularity::Hour,
                    since: None,
                    after,
                    limit: 2,
                },
            )
            .await
            .unwrap();
        pages.extend(page.items);
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    let mine: Vec<_> = first.iter().filter(|s| s.integration_id == id).collect();
    assert_eq!(pages.len(), mine.len());
    assert!(pages.windows(2).all(|w| w[0].start < w[1].start));
    let other = store.tenant(TenantId::new("ta").unwrap());
    let daily_page = other
        .health_summaries(
            id,
            &super::SummaryQuery {
                granularity: super::Granularity::Day,
                since: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(daily_page.items.is_empty(), "another tenant's summaries");
}

fn policy(retention: i64, rollup: i64, summaries: i64) -> HistoryPolicy {
    HistoryPolicy {
        retention: ChronoDuration::days(retention),
        rollup_after: ChronoDuration::days(rollup),
        summary_retention: ChronoDuration::days(summaries),
        grace: ChronoDuration::minutes(2),
    }
}

#[tokio::test]
async fn retention_drops_whole_days_ahead_of_a_stopped_summariser() {
    let store = testing::store().await;
    let system = store.system();
    let now = Utc::now();
    let today = start_of_day(now);
    let ids = integrations(2);
    // Six days of results, one every two hours; nothing summarised.
    let rows: Vec<_> = (0..72)
        .flat_map(|i| {
            let at = today - ChronoDuration::days(6) + ChronoDuration::hours(i * 2);
            ids.iter()
                .map(move |(id, tenant)| row(*id, tenant, at, "healthy", i))
        })
        .collect();
    system.write_results(&rows, &[], &[]).await.unwrap();
    assert_eq!(system.summarized_until().await.unwrap(), None);

    let report = history::retain(&system, &policy(2, 14, 90), now)
        .await
        .unwrap();
    let cutoff = now - ChronoDuration::days(2);
    let oldest = system.oldest_check().await.unwrap().unwrap();
    assert!(
        oldest >= start_of_day(cutoff),
        "{oldest} kept past {cutoff}"
    );
    assert!(report.unsummarised_hours >= 72, "{report:?}");
    if system.partitioned() {
        // Whole days went: the four before the cut-off's day, no row deleted one by one.
        assert_eq!(report.rows_deleted, 0);
        assert_eq!(report.partitions_dropped.len(), 4 + (7 - 6), "{report:?}");
        let days: Vec<_> = system
            .partitions(&RESULTS)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.from.unwrap())
            .collect();
        assert_eq!(days.first(), Some(&start_of_day(cutoff)));
        // Created ahead, row-level security forced on every one.
        assert_eq!(
            days.last(),
            Some(&(today + ChronoDuration::days(DAYS_AHEAD)))
        );
        let unforced = store
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid \
                 WHERE i.inhparent IN ('health_checks'::regclass, 'health_summaries'::regclass) \
                 AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(unforced, 0);
    } else {
        assert!(oldest >= cutoff);
        assert!(report.rows_deleted > 0);
    }
    // The second pass finds nothing more to do.
    let again = history::retain(&system, &policy(2, 14, 90), now)
        .await
        .unwrap();
    assert_eq!(again.unsummarised_hours, 0, "{again:?}");
    assert!(again.partitions_dropped.is_empty() && again.rows_deleted == 0);

    // The summariser starts again from what is left.
    let hours = history::summarise(&system, &policy(2, 14, 90), now)
        .await
        .unwrap();
    assert!(hours > 0);
    let first = hourly(&store).await.first().unwrap().hour;
    assert!(first >= start_of_hour(oldest));
    let page = store
        .tenant(TenantId::new("ta").unwrap())
        .health_history(
            ids[0].0,
            &HistoryQuery {
                limit: 200,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!page.items.is_empty());
    assert!(page.items.iter().all(|r| r.checked_at >= oldest));
}

#[tokio::test]
async fn uptime_counts_every_check_once_across_days_hours_and_raw_results() {
    let store = testing::store().await;
    let system = store.system();
    let mut rng = StdRng::seed_from_u64(7);
    // Midnight: every window starts on an hour, so summaries fall wholly in or out of it.
    let now = start_of_day(Utc::now());
    system
        .ensure_partitions(now - ChronoDuration::days(21), now)
        .await
        .unwrap();
    let ids = integrations(2);
    let hours = (1..=20 * 24).map(|h| now - ChronoDuration::hours(h));
    let rows = random_rows(&mut rng, &ids, hours, 3);
    for chunk in rows.chunks(500) {
        system.write_results(chunk, &[], &[]).await.unwrap();
    }
    // Summaries of every hour but the last, the older days rolled up, raw results pruned.
    history::summarise(&system, &policy(30, 30, 90), now)
        .await
        .unwrap();
    let rolled = system
        .roll_up(now - ChronoDuration::days(14))
        .await
        .unwrap();
    // Six days with summaries (on PostgreSQL, empty day partitions before them go too).
    assert_eq!(rolled.last(), Some(&(now - ChronoDuration::days(15))));
    assert!(rolled.contains(&(now - ChronoDuration::days(20))));
    history::retain(&system, &policy(7, 14, 90), now)
        .await
        .unwrap();
    assert!(
        !daily(&store).await.is_empty() && !hourly(&store).await.is_empty(),
        "all three sources in use"
    );

    let pending = Pending {
        checks: 3,
        failures: 1,
    };
    for (id, tenant) in &ids {
        let uptime = store
            .tenant(TenantId::new(*tenant).unwrap())
            .uptime_with(*id, now, pending)
            .await
            .unwrap();
        let window = |days: i64| {
            let of: Vec<_> = rows
                .iter()
                .filter(|r| {
                    r.integration_id == *id && r.checked_at >= now - ChronoDuration::days(days)
                })
                .collect();
            let e = brute_force(&of).unwrap_or_default();
            let (checks, failures) = (e.checks + 3, e.failures + 1);
            Some((checks - failures) as f64 / checks as f64)
        };
        assert_eq!(uptime.last_24h, window(1));
        assert_eq!(uptime.last_7d, window(7));
        assert_eq!(uptime.last_30d, window(30));
    }
}

#[tokio::test]
async fn the_unpartitioned_schema_upgrades_in_place_keeping_its_history() {
    use migration::{Migrator, MigratorTrait};

    let dir = tempfile::tempdir().unwrap();
    let url = crate::db::testing::fresh_url(dir.path()).await;
    let db = crate::db::connect(&url, &Default::default()).await.unwrap();
    Migrator::up(&db, Some(10)).await.unwrap();
    let backend = db.get_database_backend();
    let postgres = backend == sea_orm::DatabaseBackend::Postgres;
    let (id, now) = (Uuid::now_v7(), Utc::now());
    let hour = start_of_hour(now) - ChronoDuration::hours(5);
    // The old schema: results with a surrogate key, one hour summarised.
    let txn = crate::store::begin_all_tenants(&db, true).await.unwrap();
    for i in 0..50 {
        txn.execute_raw(super::statement(
            backend,
            "INSERT INTO health_checks (integration_id, tenant_id, checked_at, status, reason, \
             latency_ms, error_message) VALUES ($1, 't', $2, 'healthy', NULL, $3, NULL)",
            [
                id.into(),
                (hour + ChronoDuration::minutes(i * 6)).into(),
                i.into(),
            ],
        ))
        .await
        .unwrap();
    }
    txn.execute_raw(super::statement(
        backend,
        "INSERT INTO health_summaries (integration_id, hour, tenant_id, checks, failures, \
         latency_p50_ms, latency_p95_ms, latency_p99_ms, latency_max_ms) \
         VALUES ($1, $2, 't', 10, 0, 4, 9, 9, 9)",
        [id.into(), hour.into()],
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();

    Migrator::up(&db, None).await.unwrap();
    let store = Store::new(db);
    let system = store.system();
    let tenant = store.tenant(TenantId::new("t").unwrap());
    let history = tenant
        .health_history(
            id,
            &HistoryQuery {
                limit: 200,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(history.items.len(), 50, "every result kept");
    assert_eq!(history.items[0].latency_ms, 49, "newest first");
    assert_eq!(
        system.summarized_until().await.unwrap(),
        Some(hour + ChronoDuration::hours(1)),
        "the hours summarised before are known"
    );
    if postgres {
        let legacy: Vec<_> = system
            .partitions(&RESULTS)
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.from.is_none())
            .collect();
        assert_eq!(legacy.len(), 1, "the old table is one partition");
        assert_eq!(legacy[0].name, "health_checks_legacy");
        assert!(legacy[0].to > now);
        assert!(
            system
                .partitions(&SUMMARIES)
                .await
                .unwrap()
                .iter()
                .any(|p| p.name == "health_summaries_legacy")
        );
    }
    // Results written after the upgrade land beside the old ones, and the old hours go on
    // being summarised and pruned.
    system
        .write_results(&[row(id, "t", now, "unhealthy", 7)], &[], &[])
        .await
        .unwrap();
    let next = system
        .next_hour_to_summarize(now - ChronoDuration::days(14), start_of_hour(now))
        .await
        .unwrap();
    assert_eq!(next, Some(hour + ChronoDuration::hours(1)));
    history::summarise(&system, &policy(7, 14, 90), now)
        .await
        .unwrap();
    let uptime = tenant.uptime(id, now).await.unwrap();
    // 10 summarised checks of the first hour, 40 later ones summarised now, one unhealthy.
    assert_eq!(uptime.last_24h, Some(50.0 / 51.0));
    let pruned = system
        .prune_checks(hour + ChronoDuration::hours(1), 1000)
        .await
        .unwrap();
    assert_eq!(pruned, 10, "batches from the legacy rows");
}
