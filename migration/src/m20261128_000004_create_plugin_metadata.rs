use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PluginMetadata::Table)
                    .if_not_exists()
                    .col(string_len(PluginMetadata::PluginId, 128).primary_key())
                    .col(string_len_uniq(PluginMetadata::Type, 64))
                    .col(string_len(PluginMetadata::Version, 64))
                    .col(json_binary(PluginMetadata::Capabilities))
                    .col(string_len_null(PluginMetadata::Path, 4096))
                    .col(timestamp_with_time_zone(PluginMetadata::DiscoveredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PluginMetadata::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PluginMetadata {
    Table,
    PluginId,
    Type,
    Version,
    Capabilities,
    Path,
    DiscoveredAt,
}
