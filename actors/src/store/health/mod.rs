//! Health results: the history and uptime a tenant reads, and the system-wide writes of the
//! health engine (batched results, status transitions, hourly summaries, retention).
//!
//! # Layout
//! - `history`: a tenant's check results, a page at a time, newest first.
//! - `uptime`: a tenant's uptime over 24 hours, 7 and 30 days, from summaries and results.
//! - `write`: one batch of results, status transitions and their events in one transaction
//!   ([`SystemStore::write_results`](super::SystemStore::write_results)); `bulk` is its
//!   PostgreSQL path, one statement per table.
//! - `summaries`: the hourly summaries (checks, failures, latency percentiles).
//! - `retention`: pruning old results and summaries.
//! - `tests`: results summarised, pruned and still counted in uptime; the sample result row
//!   the other modules' tests store.
//!
//! The row types the writer hands in, and what counts towards uptime, are here: every part
//! above shares them.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use entity::health_check;
use uuid::Uuid;

mod bulk;
mod history;
mod retention;
mod summaries;
mod uptime;
mod write;

#[cfg(test)]
mod tests;

pub use history::HistoryQuery;
pub use uptime::Uptime;

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
fn counts(status: &str) -> bool {
    status != "rate_limited"
}

/// The start of the hour `t` falls in.
pub fn start_of_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}
