//! The floor of the health benchmark: the same HTTP checks at the same rate, and the same rows
//! bulk-inserted, by a minimal tokio + reqwest loop with no actors, no thresholds and no
//! supervision. Prints its own CPU time per check.
//!
//! Usage: `health-floor DATABASE_URL PROVIDER_URL COUNT INTERVAL_SECONDS WARMUP_SECONDS WINDOW_SECONDS`
//! (the database must be migrated; rows go to `health_checks` like the daemon's).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, Database, EntityTrait};
use tokio::sync::mpsc;

/// The daemon's allocator, so the comparison is of the code, not of the allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 1/100 s on Linux).
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let args: Vec<String> = std::env::args().collect();
    let [_, url, provider, count, interval, warmup, window] = args.as_slice() else {
        bail!("usage: health-floor DATABASE_URL PROVIDER_URL COUNT INTERVAL WARMUP WINDOW");
    };
    let count: usize = count.parse().context("COUNT")?;
    let interval = Duration::from_secs(interval.parse().context("INTERVAL")?);
    let warmup = Duration::from_secs(warmup.parse().context("WARMUP")?);
    let window = Duration::from_secs(window.parse().context("WINDOW")?);
    let db = Database::connect(url.as_str()).await.context("connect")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (tx, mut rx) = mpsc::channel::<(uuid::Uuid, i64, bool)>(65_536);

    // Bulk writer: batches of up to 1000 rows, or whatever came within 200 ms.
    let writer = tokio::spawn(async move {
        let mut checks = 0u64;
        let mut batch = Vec::with_capacity(1000);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while batch.len() < 1000 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(row)) => batch.push(row),
                    _ => break,
                }
            }
            checks += batch.len() as u64;
            let rows = batch
                .drain(..)
                .map(|(id, latency, ok)| entity::health_check::ActiveModel {
                    integration_id: Set(id),
                    tenant_id: Set("floor".into()),
                    checked_at: Set(Utc::now()),
                    status: Set(if ok { "healthy" } else { "unhealthy" }.into()),
                    reason: Set(None),
                    latency_ms: Set(latency),
                    error_message: Set(None),
                    folded: Set(None),
                });
            if let Err(e) = entity::health_check::Entity::insert_many(rows)
                .exec_without_returning(&db)
                .await
            {
                eprintln!("insert failed: {e}");
            }
        }
        checks
    });

    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ping = format!("{}/v2/", provider.trim_end_matches('/'));
    for i in 0..count {
        let (http, tx, ping, counter) = (http.clone(), tx.clone(), ping.clone(), counter.clone());
        let offset = interval.mul_f64(i as f64 / count as f64);
        tokio::spawn(async move {
            let id = uuid::Uuid::now_v7();
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let started = Instant::now();
                let ok = http
                    .get(&ping)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let latency = started.elapsed().as_millis() as i64;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if tx.send((id, latency, ok)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    tokio::time::sleep(warmup).await;
    let (cpu0, n0) = (
        cpu_seconds(),
        counter.load(std::sync::atomic::Ordering::Relaxed),
    );
    tokio::time::sleep(window).await;
    let (cpu1, n1) = (
        cpu_seconds(),
        counter.load(std::sync::atomic::Ordering::Relaxed),
    );
    let checks = n1 - n0;
    println!(
        "{{\"checks_per_second\": {:.1}, \"cpu_us_per_check\": {:.1}}}",
        checks as f64 / window.as_secs_f64(),
        (cpu1 - cpu0) * 1e6 / checks.max(1) as f64
    );
    writer.abort();
    Ok(())
}
