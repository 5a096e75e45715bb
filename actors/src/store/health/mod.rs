//! Health results: the history, summaries and uptime a tenant reads, and the system-wide
//! writes of the health engine (batched results, status transitions, hourly summaries and
//! their daily roll-ups, retention, partitions).
//!
//! # Layout
//! - `history`: a tenant's check results, a page at a time, newest first.
//! - `uptime`: a tenant's uptime over 24 hours, 7 and 30 days, from daily and hourly summaries
//!   and the results after them.
//! - `write`: one batch of results, status transitions and their events in one transaction
//!   ([`SystemStore::write_results`](super::SystemStore::write_results)); `bulk` is its
//!   PostgreSQL path, one statement per table.
//! - `summaries`: the hourly summaries (checks, failures, latency percentiles), one statement
//!   per hour, the record of the hours done, and a tenant's summaries page by page.
//! - `rollups`: hourly summaries rolled up into daily ones once they are old enough.
//! - `partitions`: the daily partitions of results and hourly summaries on PostgreSQL,
//!   created ahead and dropped whole.
//! - `retention`: removing old results and summaries (whole partitions where there are some,
//!   batched deletes elsewhere).
//! - `tests`: summaries and roll-ups against a brute-force computation, retention, uptime; the
//!   sample result row the other modules' tests store.
//!
//! The row types the writer hands in, and what counts towards uptime, are here: every part
//! above shares them.
//!
//! # Storage on PostgreSQL
//! `health_checks` and `health_summaries` are partitioned by day. Each results partition has
//! one b-tree, `(integration_id, checked_at DESC)`, which serves the history page and uptime,
//! and a BRIN on `checked_at`, which serves the summariser's one pass over an hour (rows
//! arrive in time order, so an hour is a run of consecutive pages). Retention detaches and
//! drops whole days: no `DELETE`, no dead rows, no vacuum.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use entity::health_check;
use uuid::Uuid;

mod bulk;
mod history;
pub mod partitions;
mod retention;
mod rollups;
mod summaries;
mod uptime;
mod write;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use bulk::{LOCK_OUTBOX, NOTIFY_OUTBOX, OUTBOX_LOCK};
pub use history::HistoryQuery;
pub use summaries::{Granularity, Summary, SummaryQuery};
pub use uptime::{Pending, Uptime};

/// One stored check result.
pub type CheckEntry = health_check::Model;

/// A check result to store.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub integration_id: Uuid,
    pub tenant_id: Arc<str>,
    pub checked_at: DateTime<Utc>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub latency_ms: i64,
    pub error_message: Option<String>,
    /// Checks of the same hour this result stands for besides itself (`raw_history =
    /// "changes"`); `None` for a result that stands for itself alone.
    pub folded: Option<Box<Folded>>,
}

/// Checks that were not stored one by one, carried by a stored result of the same hour so
/// that summaries and uptime still count them exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    /// How many of them were unhealthy.
    pub failures: u32,
    /// The latency of each (checks that count towards uptime only).
    pub latencies: Vec<u32>,
}

impl Folded {
    /// Counts one more check (rate-limit pauses are not counted).
    pub fn add(&mut self, status: &str, latency_ms: i64) {
        if counts(status) {
            self.failures += u32::from(status == UNHEALTHY);
            self.latencies
                .push(u32::try_from(latency_ms.max(0)).unwrap_or(u32::MAX));
        }
    }

    /// Adds the checks another result carried.
    pub fn merge(&mut self, other: &Folded) {
        self.failures += other.failures;
        self.latencies.extend_from_slice(&other.latencies);
    }

    pub fn is_empty(&self) -> bool {
        self.latencies.is_empty()
    }

    /// The stored form, `{"failures": n, "latencies": [..]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "failures": self.failures, "latencies": self.latencies })
    }

    /// Reads the stored form; `None` when it is not one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let failures = u32::try_from(value.get("failures")?.as_u64()?).ok()?;
        let latencies = value
            .get("latencies")?
            .as_array()?
            .iter()
            .map(|l| l.as_u64().and_then(|l| u32::try_from(l).ok()))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            failures,
            latencies,
        })
    }
}

/// A status transition to store on the integration's row.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub integration_id: Uuid,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub checked_at: DateTime<Utc>,
}

const UNHEALTHY: &str = "unhealthy";

/// Whether a stored result counts towards uptime: a rate-limit pause is neither up nor down.
pub fn counts(status: &str) -> bool {
    status != "rate_limited"
}

/// The start of the hour `t` falls in.
pub fn start_of_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// The start of the (UTC) day `t` falls in.
pub fn start_of_day(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::days(1)).unwrap_or(t)
}

/// A statement written with PostgreSQL's numbered parameters (`$1`), for either backend:
/// SQLite takes the same numbers as `?1`.
fn statement(
    backend: sea_orm::DatabaseBackend,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> sea_orm::Statement {
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        sql.to_owned()
    } else {
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}
