//! Health monitoring: per-integration monitoring settings, and hourly summaries of the check
//! history so that uptime over long windows is cheap after raw results are pruned.

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Integrations::Table)
                    .add_column(boolean(Integrations::MonitoringPaused).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Integrations::Table)
                    .add_column(integer_null(Integrations::CheckIntervalSeconds))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HealthSummaries::Table)
                    .if_not_exists()
                    .col(uuid(HealthSummaries::IntegrationId))
                    .col(timestamp_with_time_zone(HealthSummaries::Hour))
                    .col(string_len(HealthSummaries::TenantId, 64))
                    .col(big_integer(HealthSummaries::Checks))
                    .col(big_integer(HealthSummaries::Failures))
                    .col(big_integer(HealthSummaries::LatencyP50Ms))
                    .col(big_integer(HealthSummaries::LatencyP95Ms))
                    .col(big_integer(HealthSummaries::LatencyP99Ms))
                    .col(big_integer(HealthSummaries::LatencyMaxMs))
                    .primary_key(
                        Index::create()
                            .col(HealthSummaries::IntegrationId)
                            .col(HealthSummaries::Hour),
                    )
                    .to_owned(),
            )
            .await?;
        // Retention prunes by time across all integrations.
        manager
            .create_index(
                Index::create()
                    .name("ix_health_checks_checked_at")
                    .table(HealthChecks::Table)
                    .col(HealthChecks::CheckedAt)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let predicate = format!(
                "tenant_id = current_setting('{TENANT_SETTING}', true) \
                 OR current_setting('{ALL_TENANTS_SETTING}', true) = 'on'"
            );
            let db = manager.get_connection();
            for statement in [
                "ALTER TABLE health_summaries ENABLE ROW LEVEL SECURITY".to_owned(),
                "ALTER TABLE health_summaries FORCE ROW LEVEL SECURITY".to_owned(),
                format!(
                    "CREATE POLICY tenant_isolation ON health_summaries \
                     USING ({predicate}) WITH CHECK ({predicate})"
                ),
            ] {
                db.execute_unprepared(&statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthSummaries::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_health_checks_checked_at")
                    .table(HealthChecks::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Integrations::MonitoringPaused,
            Integrations::CheckIntervalSeconds,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Integrations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    MonitoringPaused,
    CheckIntervalSeconds,
}

#[derive(DeriveIden)]
enum HealthChecks {
    Table,
    CheckedAt,
}

#[derive(DeriveIden)]
enum HealthSummaries {
    Table,
    IntegrationId,
    Hour,
    TenantId,
    Checks,
    Failures,
    LatencyP50Ms,
    LatencyP95Ms,
    LatencyP99Ms,
    LatencyMaxMs,
}
