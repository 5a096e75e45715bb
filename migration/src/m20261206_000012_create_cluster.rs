//! Several replicas over one PostgreSQL: who is alive (`cluster_replicas`, one heartbeat row per
//! replica) and who holds what (`cluster_leases`: the leader lease and one lease per shard of
//! the fleet). A lease row is taken and renewed on the database clock; its `epoch` grows by one
//! at every change of holder, and every health result a shard's holder writes is checked against
//! it in the same transaction. The tables hold no tenant data (no row-level security); the
//! single-process SQLite mode never writes them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterReplicas::Table)
                    .if_not_exists()
                    .col(string_len(ClusterReplicas::Id, 128).primary_key())
                    .col(text_null(ClusterReplicas::AdvertiseUrl))
                    .col(timestamp_with_time_zone(ClusterReplicas::StartedAt))
                    .col(timestamp_with_time_zone(ClusterReplicas::HeartbeatAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClusterLeases::Table)
                    .if_not_exists()
                    .col(string_len(ClusterLeases::Name, 64).primary_key())
                    .col(string_len_null(ClusterLeases::Holder, 128))
                    .col(big_integer(ClusterLeases::Epoch).default(0))
                    .col(timestamp_with_time_zone_null(ClusterLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // Replicas reconcile their monitors with the catalog changes of the last minutes.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("ix_integrations_updated_at")
                    .table(Integrations::Table)
                    .col(Integrations::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_integrations_updated_at")
                    .table(Integrations::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterLeases::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterReplicas::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ClusterReplicas {
    Table,
    Id,
    AdvertiseUrl,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum ClusterLeases {
    Table,
    Name,
    Holder,
    Epoch,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    UpdatedAt,
}
