//! Health history at fleet scale: raw results and hourly summaries in daily partitions on
//! PostgreSQL, a slimmer result row, daily roll-ups of the hourly summaries, and a record of
//! the hours summarised.
//!
//! # What changes
//! - `health_checks` (PostgreSQL): range-partitioned by day on `checked_at`. The surrogate key
//!   `id` goes (nothing reads by it; history pages by time), with its primary-key index and the
//!   b-tree on `checked_at`: each day's partition has one composite index
//!   `(integration_id, checked_at DESC)` for the history page, a BRIN on `checked_at` for the
//!   summariser, and a partial index on the rows that carry folded checks (`raw_history =
//!   "changes"`). Partitions are created ahead and dropped by the daemon
//!   (`actors::store::health::partitions`); the ones here only bridge the gap until it runs.
//! - `health_checks.folded` (both backends): the checks a stored result stands for besides
//!   itself, `{"failures": n, "latencies": [..]}`, when only state changes and an hourly sample
//!   are kept. `json`, not `jsonb`: kept as text it takes about half the room (a number is its
//!   digits, not a numeric), and it is only ever read whole.
//! - `health_summaries` (PostgreSQL): partitioned by day on `hour`, so hourly summaries rolled
//!   up into daily ones are dropped a day at a time too.
//! - `health_summaries_daily`: one row per integration and day, from the hourly summaries.
//! - `health_summary_hours`: the hours the summariser has done, so "what is next" is one
//!   index probe instead of a scan of every summary.
//!
//! # Upgrading in place
//! Nothing is copied. The existing tables are renamed to `…_legacy`, slimmed by catalog-only
//! changes (a dropped column is only marked dropped), and attached to the new partitioned
//! tables as one partition each, bounded `[MINVALUE, start of tomorrow)`: their rows stay
//! where they are, their indexes serve the same queries, and retention deletes from them in
//! batches until they are empty, then drops them. The one step that reads every row is the
//! check of that bound when `health_checks_legacy` is attached (a sequential scan, about a
//! second per ten million rows on the development machine): it comes last, so the lock the
//! result writer would wait on is held for that scan and no longer. SQLite keeps one table
//! and gains the column and indexes.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use sea_orm_migration::sea_orm::{DatabaseBackend, Statement};
use sea_orm_migration::{prelude::*, schema::*};

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Days of result partitions created before today on a new database (the default retention),
/// and after today on any.
const DAYS_BEHIND: i64 = 7;
const DAYS_AHEAD: i64 = 3;
/// Days of hourly-summary partitions created before today (the default roll-up age, plus one).
const SUMMARY_DAYS_BEHIND: i64 = 15;

fn policy(table: &str) -> [String; 3] {
    let predicate = format!(
        "tenant_id = current_setting('{TENANT_SETTING}', true) \
         OR current_setting('{ALL_TENANTS_SETTING}', true) = 'on'"
    );
    [
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!(
            "CREATE POLICY tenant_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})"
        ),
    ]
}

fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::days(1)).unwrap_or(t)
}

fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S+00"))
}

/// One day's partition of `parent`, with its indexes and row-level security.
fn partition(parent: &str, day: DateTime<Utc>) -> Vec<String> {
    let name = format!("{parent}_p{}", day.format("%Y%m%d"));
    let mut statements = vec![format!(
        "CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ({}) TO ({})",
        literal(day),
        literal(day + Duration::days(1))
    )];
    if parent == "health_checks" {
        statements.extend([
            format!("CREATE INDEX {name}_history ON {name} (integration_id, checked_at DESC)"),
            format!("CREATE INDEX {name}_time ON {name} USING brin (checked_at)"),
            format!("CREATE INDEX {name}_folded ON {name} (checked_at) WHERE folded IS NOT NULL"),
        ]);
    }
    statements.extend(policy(&name));
    statements
}

async fn run(manager: &SchemaManager<'_>, statements: &[String]) -> Result<(), DbErr> {
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

/// Whether `table` has a row, and the latest `column` in it (through its index).
async fn newest(
    manager: &SchemaManager<'_>,
    table: &str,
    column: &str,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT max({column}) AS newest FROM {table}"),
        ))
        .await?;
    match row {
        Some(row) => row.try_get::<Option<DateTime<Utc>>>("", "newest"),
        None => Ok(None),
    }
}

/// Turns `table` into a table partitioned by day on `key`, its rows kept in place as the
/// partition `{table}_legacy`. `columns` is the new parent's definition, matching the old
/// table's remaining columns type for type.
async fn partition_in_place(
    manager: &SchemaManager<'_>,
    table: &str,
    key: &str,
    columns: &str,
    days_behind: i64,
) -> Result<(), DbErr> {
    let legacy = format!("{table}_legacy");
    run(
        manager,
        &[
            format!("ALTER TABLE {table} RENAME TO {legacy}"),
            format!("CREATE TABLE {table} ({columns}) PARTITION BY RANGE ({key})"),
        ],
    )
    .await?;
    run(manager, &policy(table)).await?;
    let today = day_start(Utc::now());
    let first = match newest(manager, &legacy, key).await? {
        None => {
            run(manager, &[format!("DROP TABLE {legacy}")]).await?;
            today - Duration::days(days_behind)
        }
        Some(newest) => {
            // Every legacy row lies before the bound, even one stamped in the future.
            let cutover = day_start(Ord::max(newest, Utc::now())) + Duration::days(1);
            run(
                manager,
                &[format!(
                    "ALTER TABLE {table} ATTACH PARTITION {legacy} \
                     FOR VALUES FROM (MINVALUE) TO ({})",
                    literal(cutover)
                )],
            )
            .await?;
            cutover
        }
    };
    let mut day = first;
    while day <= today + Duration::days(DAYS_AHEAD) {
        run(manager, &partition(table, day)).await?;
        day += Duration::days(1);
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        if postgres {
            // Row-level security is forced on the tables read below: without this, they would
            // look empty to the role that owns them (and an empty legacy table is dropped).
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "SELECT set_config('{ALL_TENANTS_SETTING}', 'on', true)"
                ))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(HealthSummariesDaily::Table)
                    .col(uuid(HealthSummariesDaily::IntegrationId))
                    .col(timestamp_with_time_zone(HealthSummariesDaily::Day))
                    .col(string_len(HealthSummariesDaily::TenantId, 64))
                    .col(big_integer(HealthSummariesDaily::Checks))
                    .col(big_integer(HealthSummariesDaily::Failures))
                    .col(big_integer(HealthSummariesDaily::LatencyP50Ms))
                    .col(big_integer(HealthSummariesDaily::LatencyP95Ms))
                    .col(big_integer(HealthSummariesDaily::LatencyP99Ms))
                    .col(big_integer(HealthSummariesDaily::LatencyMaxMs))
                    .primary_key(
                        Index::create()
                            .col(HealthSummariesDaily::IntegrationId)
                            .col(HealthSummariesDaily::Day),
                    )
                    .to_owned(),
            )
            .await?;
        // Retention deletes by day across all integrations.
        manager
            .create_index(
                Index::create()
                    .name("ix_health_summaries_daily_day")
                    .table(HealthSummariesDaily::Table)
                    .col(HealthSummariesDaily::Day)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HealthSummaryHours::Table)
                    .col(timestamp_with_time_zone(HealthSummaryHours::Hour).primary_key())
                    .col(big_integer(HealthSummaryHours::Summaries))
                    .col(timestamp_with_time_zone(HealthSummaryHours::SummarizedAt))
                    .to_owned(),
            )
            .await?;
        // The hours already summarised (the old schema knew them only from the summaries).
        let db = manager.get_connection();
        let now = if postgres { "$1" } else { "?" };
        db.execute_raw(Statement::from_sql_and_values(
            manager.get_database_backend(),
            format!(
                "INSERT INTO health_summary_hours (hour, summaries, summarized_at) \
                 SELECT hour, count(*), {now} FROM health_summaries GROUP BY hour"
            ),
            [Utc::now().into()],
        ))
        .await?;

        if !postgres {
            db.execute_unprepared("ALTER TABLE health_checks ADD COLUMN folded json_text NULL")
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_health_summaries_hour")
                        .table(HealthSummaries::Table)
                        .col(HealthSummaries::Hour)
                        .to_owned(),
                )
                .await?;
            return Ok(());
        }

        run(manager, &policy("health_summaries_daily")).await?;
        // Summaries first: the result writer never touches them, so the time spent here does
        // not hold it up.
        run(
            manager,
            &[
                "ALTER INDEX health_summaries_pkey RENAME TO health_summaries_legacy_pkey".into(),
                // Roll-ups and retention find the legacy rows by hour.
                "CREATE INDEX ix_health_summaries_legacy_hour ON health_summaries (hour)".into(),
            ],
        )
        .await?;
        partition_in_place(
            manager,
            "health_summaries",
            "hour",
            "integration_id uuid NOT NULL, hour timestamptz NOT NULL, \
             tenant_id varchar(64) NOT NULL, checks bigint NOT NULL, failures bigint NOT NULL, \
             latency_p50_ms bigint NOT NULL, latency_p95_ms bigint NOT NULL, \
             latency_p99_ms bigint NOT NULL, latency_max_ms bigint NOT NULL, \
             PRIMARY KEY (integration_id, hour)",
            SUMMARY_DAYS_BEHIND,
        )
        .await?;

        // Then the results, which the writer inserts into: catalog changes, and the scan that
        // checks the legacy partition's bound.
        run(
            manager,
            &[
                "ALTER TABLE health_checks DROP CONSTRAINT health_checks_pkey".into(),
                "ALTER TABLE health_checks DROP COLUMN id".into(),
                "ALTER TABLE health_checks ADD COLUMN folded json".into(),
                "ALTER INDEX ix_health_checks_integration_checked_at \
                 RENAME TO health_checks_legacy_history"
                    .into(),
                "ALTER INDEX ix_health_checks_checked_at RENAME TO health_checks_legacy_time"
                    .into(),
            ],
        )
        .await?;
        // Columns ordered so that the fixed-width ones need no padding: 24 bytes of header,
        // 32 of uuid, time and latency, then the short strings.
        partition_in_place(
            manager,
            "health_checks",
            "checked_at",
            "integration_id uuid NOT NULL, checked_at timestamptz NOT NULL, \
             latency_ms bigint NOT NULL, tenant_id varchar(64) NOT NULL, \
             status varchar(16) NOT NULL, reason varchar(64), error_message varchar(1024), \
             folded json",
            DAYS_BEHIND,
        )
        .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Undoing the partitioning would copy every row back into one table; restore from a
        // backup taken before the upgrade instead.
        Err(DbErr::Migration(
            "m20261206_000011 cannot be reverted in place; restore the pre-upgrade backup".into(),
        ))
    }
}

#[derive(DeriveIden)]
enum HealthSummaries {
    Table,
    Hour,
}

#[derive(DeriveIden)]
enum HealthSummariesDaily {
    Table,
    IntegrationId,
    Day,
    TenantId,
    Checks,
    Failures,
    LatencyP50Ms,
    LatencyP95Ms,
    LatencyP99Ms,
    LatencyMaxMs,
}

#[derive(DeriveIden)]
enum HealthSummaryHours {
    Table,
    Hour,
    Summaries,
    SummarizedAt,
}
