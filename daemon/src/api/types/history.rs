//! Bodies of `/api/v1/integrations/{id}/health/summaries`: hourly and daily summaries of an
//! integration's checks, for uptime and latency charts.

use actors::store::health::{Granularity, Summary};
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};

/// The length of a summarised period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SummaryGranularity {
    /// Complete hours, kept until they are rolled up into days (14 days by default).
    Hour,
    /// Days (UTC), kept for the summary retention (90 days by default).
    Day,
}

impl From<SummaryGranularity> for Granularity {
    fn from(g: SummaryGranularity) -> Self {
        match g {
            SummaryGranularity::Hour => Granularity::Hour,
            SummaryGranularity::Day => Granularity::Day,
        }
    }
}

/// One hour or day of an integration's checks.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthSummary {
    /// The start of the period (UTC).
    pub start: DateTime<Utc>,
    /// Checks that count towards uptime (rate-limit pauses do not).
    pub checks: i64,
    /// Checks that were unhealthy.
    pub failures: i64,
    /// Share of the checks that were not unhealthy; null without checks.
    #[oai(nullable)]
    pub uptime: Option<f64>,
    /// Latency percentiles (nearest rank) and maximum of the counted checks. A day's
    /// percentiles are its hours' mean weighted by their checks, an estimate; its counts and
    /// maximum are exact.
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
    pub latency_max_ms: i64,
}

impl From<Summary> for HealthSummary {
    fn from(s: Summary) -> Self {
        Self {
            start: s.start,
            checks: s.checks,
            failures: s.failures,
            uptime: (s.checks > 0).then(|| (s.checks - s.failures) as f64 / s.checks as f64),
            latency_p50_ms: s.latency_p50_ms,
            latency_p95_ms: s.latency_p95_ms,
            latency_p99_ms: s.latency_p99_ms,
            latency_max_ms: s.latency_max_ms,
        }
    }
}

/// A page of summaries, oldest first.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct HealthSummaryPage {
    pub granularity: SummaryGranularity,
    pub items: Vec<HealthSummary>,
    /// Pass as `cursor` for the following periods; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}
