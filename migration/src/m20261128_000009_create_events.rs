//! Health events and their delivery: the transactional outbox (`events`), the relays' cursors
//! over it, webhook subscriptions with their per-event deliveries, and maintenance windows.
//!
//! `events.seq` orders the outbox. Only the health engine's result writer appends to it, one
//! transaction at a time, so sequence order is commit order and a reader that has seen `seq`
//! has seen everything before it.

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tenant tables this migration adds, each under the tenant-isolation policy.
const TENANT_TABLES: [&str; 4] = [
    "events",
    "alert_subscriptions",
    "alert_deliveries",
    "maintenance_windows",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Events::Seq))
                    .col(uuid_uniq(Events::Id))
                    .col(string_len(Events::TenantId, 64))
                    .col(uuid_null(Events::IntegrationId))
                    .col(string_len(Events::EventType, 128))
                    .col(timestamp_with_time_zone(Events::Time))
                    .col(json_binary(Events::Payload))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_events_tenant_seq")
                    .table(Events::Table)
                    .col(Events::TenantId)
                    .col(Events::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventCursors::Table)
                    .if_not_exists()
                    .col(string_len(EventCursors::Consumer, 64).primary_key())
                    .col(big_integer(EventCursors::Seq))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertSubscriptions::Table)
                    .if_not_exists()
                    .col(uuid(AlertSubscriptions::Id).primary_key())
                    .col(string_len(AlertSubscriptions::TenantId, 64))
                    .col(string_len(AlertSubscriptions::Name, 100))
                    .col(string_len(AlertSubscriptions::TargetUrl, 2048))
                    .col(json_binary(AlertSubscriptions::EventTypes))
                    .col(json_binary(AlertSubscriptions::IntegrationIds))
                    .col(string_len(AlertSubscriptions::SecretRef, 512))
                    .col(boolean(AlertSubscriptions::Enabled))
                    .col(big_integer(AlertSubscriptions::Version))
                    .col(timestamp_with_time_zone(AlertSubscriptions::CreatedAt))
                    .col(timestamp_with_time_zone(AlertSubscriptions::UpdatedAt))
                    .col(timestamp_with_time_zone_null(AlertSubscriptions::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_subscriptions_tenant_id")
                    .table(AlertSubscriptions::Table)
                    .col(AlertSubscriptions::TenantId)
                    .col(AlertSubscriptions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertDeliveries::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AlertDeliveries::Id))
                    .col(string_len(AlertDeliveries::TenantId, 64))
                    .col(uuid(AlertDeliveries::SubscriptionId))
                    .col(big_integer(AlertDeliveries::EventSeq))
                    .col(uuid(AlertDeliveries::EventId))
                    .col(string_len(AlertDeliveries::EventType, 128))
                    .col(uuid(AlertDeliveries::OrderingKey))
                    .col(string_len(AlertDeliveries::Status, 16))
                    .col(integer(AlertDeliveries::Attempts))
                    .col(timestamp_with_time_zone(AlertDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(
                        AlertDeliveries::LastAttemptAt,
                    ))
                    .col(integer_null(AlertDeliveries::LastStatusCode))
                    .col(string_len_null(AlertDeliveries::LastError, 1024))
                    .col(timestamp_with_time_zone(AlertDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(AlertDeliveries::RequeuedAt))
                    .col(timestamp_with_time_zone_null(AlertDeliveries::DeliveredAt))
                    .to_owned(),
            )
            .await?;
        // The delivery worker looks for the oldest pending delivery of each (subscription,
        // integration); the API lists a subscription's deliveries newest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_deliveries_queue")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::Status)
                    .col(AlertDeliveries::SubscriptionId)
                    .col(AlertDeliveries::OrderingKey)
                    .col(AlertDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        // One delivery per event and subscription, whatever happens to the relay.
        manager
            .create_index(
                Index::create()
                    .name("ux_alert_deliveries_event")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::SubscriptionId)
                    .col(AlertDeliveries::EventSeq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_deliveries_subscription")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::SubscriptionId)
                    .col(AlertDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MaintenanceWindows::Table)
                    .if_not_exists()
                    .col(uuid(MaintenanceWindows::Id).primary_key())
                    .col(string_len(MaintenanceWindows::TenantId, 64))
                    .col(uuid(MaintenanceWindows::IntegrationId))
                    .col(timestamp_with_time_zone(MaintenanceWindows::StartsAt))
                    .col(timestamp_with_time_zone(MaintenanceWindows::EndsAt))
                    .col(string_len_null(MaintenanceWindows::Recurrence, 16))
                    .col(timestamp_with_time_zone_null(MaintenanceWindows::Until))
                    .col(string_len_null(MaintenanceWindows::Reason, 500))
                    .col(string_len(MaintenanceWindows::CreatedBy, 256))
                    .col(timestamp_with_time_zone(MaintenanceWindows::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_maintenance_windows_integration")
                    .table(MaintenanceWindows::Table)
                    .col(MaintenanceWindows::TenantId)
                    .col(MaintenanceWindows::IntegrationId)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let predicate = format!(
                "tenant_id = current_setting('{TENANT_SETTING}', true) \
                 OR current_setting('{ALL_TENANTS_SETTING}', true) = 'on'"
            );
            let db = manager.get_connection();
            for table in TENANT_TABLES {
                for statement in [
                    format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
                    format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
                    format!(
                        "CREATE POLICY tenant_isolation ON {table} \
                         USING ({predicate}) WITH CHECK ({predicate})"
                    ),
                ] {
                    db.execute_unprepared(&statement).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            EventCursors::Table.into_iden(),
            AlertSubscriptions::Table.into_iden(),
            AlertDeliveries::Table.into_iden(),
            MaintenanceWindows::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Seq,
    Id,
    TenantId,
    IntegrationId,
    EventType,
    Time,
    Payload,
}

#[derive(DeriveIden)]
enum EventCursors {
    Table,
    Consumer,
    Seq,
}

#[derive(DeriveIden)]
enum AlertSubscriptions {
    Table,
    Id,
    TenantId,
    Name,
    TargetUrl,
    EventTypes,
    IntegrationIds,
    SecretRef,
    Enabled,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum AlertDeliveries {
    Table,
    Id,
    TenantId,
    SubscriptionId,
    EventSeq,
    EventId,
    EventType,
    OrderingKey,
    Status,
    Attempts,
    NextAttemptAt,
    LastAttemptAt,
    LastStatusCode,
    LastError,
    CreatedAt,
    RequeuedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum MaintenanceWindows {
    Table,
    Id,
    TenantId,
    IntegrationId,
    StartsAt,
    EndsAt,
    Recurrence,
    Until,
    Reason,
    CreatedBy,
    CreatedAt,
}
