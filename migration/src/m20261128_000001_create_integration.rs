use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Integrations::Table)
                    .if_not_exists()
                    .col(uuid(Integrations::Id).primary_key())
                    .col(string_len(Integrations::TenantId, 64))
                    .col(string_len(Integrations::Type, 64))
                    .col(string_len(Integrations::Name, 100))
                    .col(json_binary(Integrations::ConfigJson))
                    .col(string_len_null(Integrations::AuthRefUri, 2048))
                    .col(string_len(Integrations::Status, 16).default("unknown"))
                    .col(string_len_null(Integrations::StatusReason, 64))
                    .col(timestamp_with_time_zone_null(Integrations::LastCheckedAt))
                    .col(big_integer(Integrations::Version).default(1))
                    .col(timestamp_with_time_zone(Integrations::CreatedAt))
                    .col(timestamp_with_time_zone(Integrations::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Integrations::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // Lists filter by tenant (and type) and page by id.
        manager
            .create_index(
                Index::create()
                    .name("ix_integrations_tenant_type_id")
                    .table(Integrations::Table)
                    .col(Integrations::TenantId)
                    .col(Integrations::Type)
                    .col(Integrations::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_integrations_tenant_id")
                    .table(Integrations::Table)
                    .col(Integrations::TenantId)
                    .col(Integrations::Id)
                    .to_owned(),
            )
            .await?;
        // A name is unique per tenant among live rows only; a deleted name can be reused.
        // Partial indexes read the same on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_integrations_tenant_name_live \
                 ON integrations (tenant_id, name) WHERE deleted_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Integrations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    TenantId,
    Type,
    Name,
    ConfigJson,
    AuthRefUri,
    Status,
    StatusReason,
    LastCheckedAt,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}
