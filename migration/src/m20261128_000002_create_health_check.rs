use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthChecks::Table)
                    .if_not_exists()
                    .col(big_pk_auto(HealthChecks::Id))
                    .col(uuid(HealthChecks::IntegrationId))
                    .col(string_len(HealthChecks::TenantId, 64))
                    .col(timestamp_with_time_zone(HealthChecks::CheckedAt))
                    .col(string_len(HealthChecks::Status, 16))
                    .col(string_len_null(HealthChecks::Reason, 64))
                    .col(big_integer(HealthChecks::LatencyMs))
                    .col(string_len_null(HealthChecks::ErrorMessage, 1024))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_health_checks_integration_checked_at")
                    .table(HealthChecks::Table)
                    .col(HealthChecks::IntegrationId)
                    .col((HealthChecks::CheckedAt, IndexOrder::Desc))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthChecks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum HealthChecks {
    Table,
    Id,
    IntegrationId,
    TenantId,
    CheckedAt,
    Status,
    Reason,
    LatencyMs,
    ErrorMessage,
}
