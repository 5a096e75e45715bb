//! The steps of `bench/history.py` that run the daemon's own store code against a database
//! the script has filled: each prints one JSON line with its wall time and this process's CPU
//! time (PostgreSQL's CPU is measured by the script around the call).
//!
//! Usage: `history-bench COMMAND DATABASE_URL ARGS…`
//! - `migrate-to URL N`: apply the first N migrations (the schema before an upgrade).
//! - `summarize URL HOUR`: summarise one hour (`SystemStore::summarize_hour`).
//! - `drop-day URL DAY`: detach and drop the results partition of one day.
//! - `roll-up URL DAY`: roll one day of hourly summaries up into daily ones and drop them.
//! - `load URL INTEGRATIONS POOL RATE SECONDS WARMUP`: the result writer's statement at RATE
//!   rows a second for random integrations among the first INTEGRATIONS, and meanwhile history
//!   pages (`TenantStore::health_history`, 50 rows) of random integrations among the first
//!   POOL, back to back; prints their latency percentiles after WARMUP seconds.
//! - `old-writer URL INTEGRATIONS RATE SECONDS`: inserts like the daemon before the upgrade
//!   (its column list, no `folded`), and prints the longest insert: run it across a migration.
//!
//! Integration `i` is `00000000-0000-4000-8000-{i:012x}` of tenant `t{i % 100}`, as the script
//! generates them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::store::health::{CheckRow, HistoryQuery, start_of_day};
use actors::store::{Store, SystemStore};
use actors::tenant::TenantId;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::json;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn integration(i: u64) -> (Uuid, String) {
    (
        Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | u128::from(i)),
        format!("t{}", i % 100),
    )
}

fn time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("{s}: not RFC 3339"))?
        .with_timezone(&Utc))
}

async fn store(url: &str) -> anyhow::Result<Store> {
    let db = actors::db::connect(
        url,
        &actors::db::PoolSettings {
            max_connections: 8,
            ..Default::default()
        },
    )
    .await
    .context("connect")?;
    Ok(Store::new(db))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Writes `rate` rows a second in batches every 200 ms, as the result writer does; returns the
/// rows written and each batch's time in ms.
async fn write_at(
    system: SystemStore,
    integrations: u64,
    rate: u64,
    until: Instant,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let per_batch = (rate / 5).max(1);
    let tenants: Vec<Arc<str>> = (0..100).map(|t| Arc::from(format!("t{t}"))).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let (mut rows, mut times) = (0, Vec::new());
    while Instant::now() < until {
        tick.tick().await;
        let now = Utc::now();
        let batch: Vec<CheckRow> = (0..per_batch)
            .map(|_| {
                let i = rand::random_range(0..integrations);
                let unhealthy = rand::random_bool(0.02);
                CheckRow {
                    integration_id: integration(i).0,
                    tenant_id: tenants[(i % 100) as usize].clone(),
                    checked_at: now,
                    status: if unhealthy { "unhealthy" } else { "healthy" },
                    reason: unhealthy.then_some("timeout"),
                    latency_ms: rand::random_range(20..220),
                    error_message: unhealthy.then(|| "no answer within 10 s".to_owned()),
                    folded: None,
                }
            })
            .collect();
        let started = Instant::now();
        system.write_results(&batch, &[], &[]).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        rows += per_batch;
    }
    Ok((rows, times))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let out = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "migrate-to", url, n] => {
            use migration::MigratorTrait;
            let db = actors::db::connect(url, &Default::default()).await?;
            migration::Migrator::up(&db, Some(n.parse()?)).await?;
            json!({})
        }
        [_, "summarize", url, hour] => {
            let system = store(url).await?.system();
            let summaries = system.summarize_hour(time(hour)?).await?;
            json!({ "summaries": summaries })
        }
        [_, "drop-day", url, day] => {
            let system = store(url).await?.system();
            let day = time(day)?;
            let partitions = system.partitions(&actors::store::health::partitions::RESULTS);
            let Some(p) = partitions.await?.into_iter().find(|p| p.from == Some(day)) else {
                bail!("no partition for {day}");
            };
            let took = system
                .drop_partition(&actors::store::health::partitions::RESULTS, &p)
                .await?;
            json!({
                "partition": p.name,
                "detach_s": took.detach.as_secs_f64(),
                "drop_s": took.drop.as_secs_f64(),
            })
        }
        [_, "roll-up", url, day] => {
            let system = store(url).await?.system();
            let day = start_of_day(time(day)?);
            let days = system.roll_up(day + chrono::Duration::days(1)).await?;
            json!({ "days": days.len() })
        }
        [_, "load", url, integrations, pool, rate, seconds, warmup] => {
            let store = store(url).await?;
            let integrations: u64 = integrations.parse()?;
            let pool: u64 = pool.parse()?;
            let (rate, seconds, warmup): (u64, u64, u64) =
                (rate.parse()?, seconds.parse()?, warmup.parse()?);
            let until = Instant::now() + Duration::from_secs(warmup + seconds);
            let writer = tokio::spawn(write_at(store.system(), integrations, rate, until));
            let measure_from = Instant::now() + Duration::from_secs(warmup);
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let (id, tenant) = integration(rand::random_range(0..pool));
                let tenant = store.tenant(TenantId::new(tenant)?);
                let started = Instant::now();
                let page = tenant
                    .health_history(
                        id,
                        &HistoryQuery {
                            limit: 50,
                            ..Default::default()
                        },
                    )
                    .await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                anyhow::ensure!(!page.items.is_empty(), "integration {id} has no history");
                if started >= measure_from {
                    latencies.push(ms);
                }
            }
            let (rows, mut batches) = writer.await??;
            latencies.sort_by(f64::total_cmp);
            batches.sort_by(f64::total_cmp);
            json!({
                "queries": latencies.len(),
                "history_ms": {
                    "p50": percentile(&latencies, 0.50),
                    "p95": percentile(&latencies, 0.95),
                    "p99": percentile(&latencies, 0.99),
                    "max": percentile(&latencies, 1.0),
                },
                "writer_rows_per_s": rows as f64 / (warmup + seconds) as f64,
                "writer_batch_ms": {
                    "p50": percentile(&batches, 0.50),
                    "p99": percentile(&batches, 0.99),
                    "max": percentile(&batches, 1.0),
                },
            })
        }
        [_, "old-writer", url, integrations, rate, seconds] => {
            let db = actors::db::connect(url, &Default::default()).await?;
            let integrations: u64 = integrations.parse()?;
            let per_batch = (rate.parse::<u64>()? / 5).max(1);
            let until = Instant::now() + Duration::from_secs(seconds.parse()?);
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let (mut worst, mut rows, mut failed) = (0f64, 0u64, 0u64);
            while Instant::now() < until {
                tick.tick().await;
                let ids: Vec<_> = (0..per_batch)
                    .map(|_| integration(rand::random_range(0..integrations)))
                    .collect();
                // The daemon's statement before the upgrade: no `folded`.
                let sql = "INSERT INTO health_checks (integration_id, tenant_id, checked_at, \
                     status, reason, latency_ms, error_message) \
                     SELECT i, t, c, s, NULL, l, NULL FROM UNNEST($1::uuid[], $2::text[], \
                     $3::timestamptz[], $4::text[], $5::int8[]) AS v (i, t, c, s, l)";
                let now = Utc::now();
                let statement = Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    sql,
                    [
                        ids.iter().map(|i| i.0).collect::<Vec<_>>().into(),
                        ids.iter().map(|i| i.1.clone()).collect::<Vec<_>>().into(),
                        vec![now; ids.len()].into(),
                        vec!["healthy".to_owned(); ids.len()].into(),
                        vec![100i64; ids.len()].into(),
                    ],
                );
                let started = Instant::now();
                let txn = sea_orm::TransactionTrait::begin(&db).await?;
                txn.execute_unprepared("SELECT set_config('stella.all_tenants', 'on', true)")
                    .await?;
                match txn.execute_raw(statement).await {
                    Ok(_) => {
                        txn.commit().await?;
                        rows += per_batch;
                    }
                    Err(e) => {
                        eprintln!("insert failed: {e}");
                        failed += 1;
                    }
                }
                worst = worst.max(started.elapsed().as_secs_f64());
            }
            json!({ "rows": rows, "failed_batches": failed, "longest_insert_s": worst })
        }
        _ => bail!(
            "usage: history-bench (migrate-to|summarize|drop-day|roll-up|load|old-writer) URL …"
        ),
    };
    let mut out = out;
    out["elapsed_s"] = json!(t0.elapsed().as_secs_f64());
    out["cpu_s"] = json!(cpu_seconds() - cpu0);
    println!("{out}");
    Ok(())
}
