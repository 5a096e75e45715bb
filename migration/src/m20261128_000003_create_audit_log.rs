use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLogs::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AuditLogs::Id))
                    .col(string_len(AuditLogs::TenantId, 64))
                    .col(string_len(AuditLogs::Actor, 256))
                    .col(string_len(AuditLogs::Action, 64))
                    .col(uuid_null(AuditLogs::IntegrationId))
                    .col(timestamp_with_time_zone(AuditLogs::Timestamp))
                    .col(json_binary(AuditLogs::Details))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_logs_tenant_id")
                    .table(AuditLogs::Table)
                    .col(AuditLogs::TenantId)
                    .col(AuditLogs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_logs_tenant_integration_id")
                    .table(AuditLogs::Table)
                    .col(AuditLogs::TenantId)
                    .col(AuditLogs::IntegrationId)
                    .col(AuditLogs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLogs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    TenantId,
    Actor,
    Action,
    IntegrationId,
    Timestamp,
    Details,
}
