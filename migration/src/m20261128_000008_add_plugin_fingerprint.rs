//! Plugin discovery compares what it finds with what it knew by a fingerprint of the
//! manifest, schema and executable.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PluginMetadata::Table)
                    .add_column(string_len_null(PluginMetadata::Fingerprint, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PluginMetadata::Table)
                    .drop_column(PluginMetadata::Fingerprint)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum PluginMetadata {
    Table,
    Fingerprint,
}
