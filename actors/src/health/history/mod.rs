//! Upkeep of the health history: summaries of complete hours, their daily roll-ups, and
//! retention, as two tasks that never wait for each other.
//!
//! - The **summariser** summarises each complete hour once it is [`HistoryPolicy::grace`] past
//!   its end (the last checks of the hour have landed), oldest first, one statement per hour.
//! - **Retention** creates the partitions of the coming days, drops raw results older than
//!   the retention whether or not their hour was summarised (a gap is logged and counted in
//!   `integration_health_unsummarised_seconds_total`), rolls hourly summaries up into daily ones, and
//!   prunes daily summaries. So storage stays bounded when the summariser falls behind or
//!   stops.
//! - [`changes`]: `raw_history = "changes"`, the monitors' filter that stores state changes
//!   and one sample per hour.

pub mod changes;

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use opentelemetry::metrics::{Counter, Histogram};
use sea_orm::DbErr;
use tokio::task::JoinHandle;

use super::settings::HealthSettings;
use crate::store::health::partitions::DAYS_AHEAD;
use crate::store::health::{start_of_day, start_of_hour};
use crate::store::{Store, SystemStore};

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(300);
/// How often the summariser looks for complete hours.
const SUMMARIES_EVERY: Duration = Duration::from_secs(60);
/// Rows per retention delete (where whole days cannot be dropped).
const PRUNE_BATCH: u64 = 5000;
/// Pause between two deletes, so that retention never hogs the database.
const PRUNE_PAUSE: Duration = Duration::from_millis(50);

/// How long each part of the history is kept.
#[derive(Debug, Clone)]
pub struct HistoryPolicy {
    /// Raw results.
    pub retention: ChronoDuration,
    /// Hourly summaries, before they are rolled up into daily ones.
    pub rollup_after: ChronoDuration,
    /// Daily summaries.
    pub summary_retention: ChronoDuration,
    /// How long after its end an hour is summarised: results are stamped when their check
    /// started, so the last ones land up to a check timeout (plus the writer's flush) later.
    pub grace: ChronoDuration,
}

impl HistoryPolicy {
    pub fn from_settings(settings: &HealthSettings) -> Self {
        let days = |d: u32| ChronoDuration::days(i64::from(d));
        Self {
            retention: days(settings.retention_days),
            // Hourly summaries never outlive the summary retention.
            rollup_after: days(
                settings
                    .summary_rollup_days
                    .min(settings.summary_retention_days),
            ),
            summary_retention: days(settings.summary_retention_days),
            grace: ChronoDuration::seconds(
                i64::try_from(settings.timeout_seconds).unwrap_or(i64::MAX / 2_000) + 60,
            ) + ChronoDuration::milliseconds(
                i64::try_from(settings.writer_flush_ms).unwrap_or_default(),
            ),
        }
    }

    /// The first hour hourly summaries are still kept for: older hours are not summarised.
    fn hourly_floor(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        start_of_day(now - self.rollup_after)
    }
}

/// Starts the summariser and retention tasks.
pub fn spawn(store: Store, policy: HistoryPolicy) -> [JoinHandle<()>; 2] {
    let system = store.system();
    let summaries = tokio::spawn({
        let (system, policy) = (system.clone(), policy.clone());
        async move {
            let mut tick = tokio::time::interval(SUMMARIES_EVERY);
            loop {
                tick.tick().await;
                if let Err(error) = summarise(&system, &policy, Utc::now()).await {
                    tracing::warn!(message = "Summarising health results failed.", %error);
                }
            }
        }
    });
    let retention = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tick.tick().await;
            if let Err(error) = retain(&system, &policy, Utc::now()).await {
                tracing::warn!(message = "Health history retention failed.", %error);
            }
        }
    });
    [summaries, retention]
}

/// Summarises every complete hour not yet summarised, oldest first; returns how many hours.
///
/// # Errors
/// [`DbErr`]; the hours before the failing one are done.
pub async fn summarise(
    system: &SystemStore,
    policy: &HistoryPolicy,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let until = start_of_hour(now - policy.grace);
    let mut hours = 0;
    while let Some(hour) = system
        .next_hour_to_summarize(policy.hourly_floor(now), until)
        .await?
    {
        let started = std::time::Instant::now();
        let summaries = system.summarize_hour(hour).await?;
        metrics()
            .summary
            .record(started.elapsed().as_secs_f64(), &[]);
        tracing::debug!(
            message = "Health results summarised.",
            hour = %hour,
            summaries,
            elapsed_ms = started.elapsed().as_millis() as u64,
        );
        hours += 1;
    }
    Ok(hours)
}

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub partitions_created: Vec<String>,
    pub partitions_dropped: Vec<String>,
    /// Raw results deleted one by one (SQLite, or the legacy partition).
    pub rows_deleted: u64,
    /// Hours whose raw results were dropped before they were summarised.
    pub unsummarised_hours: i64,
    pub days_rolled_up: Vec<DateTime<Utc>>,
    pub daily_summaries_deleted: u64,
}

/// Hours of `[from, to)` the summariser had not reached (`done`: the end of the newest hour it
/// summarised).
fn unsummarised(from: DateTime<Utc>, to: DateTime<Utc>, done: Option<DateTime<Utc>>) -> i64 {
    let from = start_of_hour(from).max(done.unwrap_or(from));
    let span = to - from;
    if span <= ChronoDuration::zero() {
        return 0;
    }
    (span.num_seconds() + 3599) / 3600
}

/// One retention pass: partitions for the coming days, raw results past the retention
/// (whether summarised or not), hourly summaries rolled up into days, daily summaries past
/// the summary retention.
///
/// # Errors
/// [`DbErr`]: the first step that failed; the ones before it are done.
pub async fn retain(
    system: &SystemStore,
    policy: &HistoryPolicy,
    now: DateTime<Utc>,
) -> Result<RetentionReport, DbErr> {
    let mut report = RetentionReport {
        partitions_created: system
            .ensure_partitions(
                now - ChronoDuration::days(1),
                now + ChronoDuration::days(DAYS_AHEAD),
            )
            .await?,
        ..RetentionReport::default()
    };
    if !report.partitions_created.is_empty() {
        tracing::info!(
            message = "Health history partitions created.",
            partitions = report.partitions_created.join(", "),
        );
    }

    let cutoff = now - policy.retention;
    let done = system.summarized_until().await?;
    let gap = |from: DateTime<Utc>, to: DateTime<Utc>, report: &mut RetentionReport| {
        let hours = unsummarised(from, to, done);
        if hours > 0 {
            report.unsummarised_hours += hours;
            metrics().unsummarised.add(hours as u64 * 3600, &[]);
            tracing::warn!(
                message = "Raw health results were dropped before they were summarised.",
                from = %start_of_hour(from).max(done.unwrap_or(from)),
                to = %to,
                hours,
                summarized_until = done.map(|d| d.to_rfc3339()),
            );
        }
    };
    for p in system.expired_result_partitions(cutoff).await? {
        let oldest = match p.from {
            Some(from) if system.partition_has_rows(&p).await? => Some(from),
            Some(_) => None,
            None => system.oldest_check().await?.filter(|o| *o < p.to),
        };
        if let Some(oldest) = oldest {
            gap(oldest, p.to, &mut report);
        }
        let took = system
            .drop_partition(&crate::store::health::partitions::RESULTS, &p)
            .await?;
        tracing::info!(
            message = "Health results partition dropped.",
            partition = %p.name,
            detach_ms = took.detach.as_millis() as u64,
            drop_ms = took.drop.as_millis() as u64,
        );
        report.partitions_dropped.push(p.name);
    }
    if let Some(oldest) = system.oldest_check().await?
        && oldest < cutoff
    {
        let before = report.rows_deleted;
        loop {
            let deleted = system.prune_checks(cutoff, PRUNE_BATCH).await?;
            report.rows_deleted += deleted;
            if deleted < PRUNE_BATCH {
                break;
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        if report.rows_deleted > before {
            gap(oldest, cutoff, &mut report);
        }
    }

    let horizon = policy.hourly_floor(now);
    report.days_rolled_up = system.roll_up(horizon).await?;
    system.prune_summarized_hours(horizon).await?;
    let summary_cutoff = start_of_day(now - policy.summary_retention);
    loop {
        let deleted = system.prune_summaries(summary_cutoff, PRUNE_BATCH).await?;
        report.daily_summaries_deleted += deleted;
        if deleted < PRUNE_BATCH {
            break;
        }
        tokio::time::sleep(PRUNE_PAUSE).await;
    }
    if !report.partitions_dropped.is_empty() || report.rows_deleted > 0 {
        tracing::info!(
            message = "Old health results dropped.",
            partitions = report.partitions_dropped.join(", "),
            rows = report.rows_deleted,
        );
    }
    Ok(report)
}

struct Instruments {
    unsummarised: Counter<u64>,
    summary: Histogram<f64>,
}

fn metrics() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("stella-integrations");
        Instruments {
            unsummarised: meter
                // Counted in seconds (whole hours, 3600 each), the base unit Prometheus asks for.
                .u64_counter("integration_health_unsummarised_seconds")
                .with_unit("s")
                .with_description(
                    "Raw health results dropped by retention before they were summarised, in seconds of results (whole hours).",
                )
                .build(),
            summary: meter
                .f64_histogram("integration_health_summary_seconds")
                .with_unit("s")
                .with_description("Time to summarise one hour of health results, in seconds.")
                .with_boundaries(vec![0.01, 0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0])
                .build(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_counts_the_hours_not_summarised() {
        let t = |h: i64| DateTime::<Utc>::UNIX_EPOCH + ChronoDuration::hours(h);
        assert_eq!(unsummarised(t(0), t(24), None), 24);
        assert_eq!(unsummarised(t(0), t(24), Some(t(20))), 4);
        assert_eq!(unsummarised(t(0), t(24), Some(t(24))), 0);
        assert_eq!(unsummarised(t(0), t(24), Some(t(30))), 0);
        // A cut-off in the middle of an hour: that hour is partly gone.
        let mid = t(10) + ChronoDuration::minutes(30);
        assert_eq!(unsummarised(t(0), mid, Some(t(9))), 2);
    }
}
