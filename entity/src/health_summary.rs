//! The `health_summaries` table: one row per integration and hour of checks; and
//! [`daily`], one row per integration and day, rolled up from the hourly rows once they are
//! old enough.
//!
//! On PostgreSQL `health_summaries` is partitioned by day on `hour`, so a day of hourly rows
//! is dropped at once after its roll-up.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "health_summaries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub integration_id: Uuid,
    /// The start of the hour.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour: DateTimeUtc,
    pub tenant_id: String,
    /// Checks that count towards uptime (rate-limit pauses do not).
    pub checks: i64,
    /// Checks that were unhealthy.
    pub failures: i64,
    /// Latency percentiles of the counted checks (nearest rank).
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
    pub latency_max_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The `health_summaries_daily` table: one row per integration and day.
pub mod daily {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "health_summaries_daily")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub integration_id: Uuid,
        /// The start of the day (UTC).
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: DateTimeUtc,
        pub tenant_id: String,
        /// The sums of the day's hourly checks and failures: exact.
        pub checks: i64,
        pub failures: i64,
        /// The hourly percentiles' mean, weighted by each hour's checks: an estimate (the raw
        /// results are gone when a day is rolled up).
        pub latency_p50_ms: i64,
        pub latency_p95_ms: i64,
        pub latency_p99_ms: i64,
        /// The largest hourly maximum: exact.
        pub latency_max_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
