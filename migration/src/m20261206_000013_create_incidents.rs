//! Incidents: one shared outage of a tenant's integrations (a provider endpoint, the secret
//! backend, the hub's own egress), with the integrations it covers. Both tables are tenant
//! tables under the tenant-isolation policy, forced on PostgreSQL like the others.
//!
//! The outbox row of a member's status event names the incident it was part of
//! (`events.incident_id`), so every relay decides the same way, and after a restart, whether
//! it was delivered one by one; a webhook subscription chooses with `incident_members`
//! (`suppress`, the default, or `deliver`).

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TENANT_TABLES: [&str; 2] = ["incidents", "incident_members"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Incidents::Table)
                    .if_not_exists()
                    .col(uuid(Incidents::Id).primary_key())
                    .col(string_len(Incidents::TenantId, 64))
                    .col(string_len(Incidents::DomainKind, 16))
                    .col(string_len(Incidents::DomainValue, 512))
                    .col(string_len(Incidents::Reason, 32))
                    .col(string_len(Incidents::State, 16))
                    .col(string_len(Incidents::Title, 600))
                    .col(big_integer(Incidents::MemberCount))
                    .col(big_integer(Incidents::FailingCount))
                    .col(timestamp_with_time_zone(Incidents::OpenedAt))
                    .col(timestamp_with_time_zone(Incidents::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Incidents::ResolvedAt))
                    .to_owned(),
            )
            .await?;
        // The API lists a tenant's incidents newest first (ids are UUIDv7).
        manager
            .create_index(
                Index::create()
                    .name("ix_incidents_tenant_id")
                    .table(Incidents::Table)
                    .col(Incidents::TenantId)
                    .col(Incidents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IncidentMembers::Table)
                    .if_not_exists()
                    .col(uuid(IncidentMembers::IncidentId))
                    .col(uuid(IncidentMembers::IntegrationId))
                    .col(string_len(IncidentMembers::TenantId, 64))
                    .col(string_len_null(IncidentMembers::Reason, 32))
                    .col(timestamp_with_time_zone(IncidentMembers::JoinedAt))
                    .col(timestamp_with_time_zone_null(IncidentMembers::RecoveredAt))
                    .primary_key(
                        Index::create()
                            .col(IncidentMembers::IncidentId)
                            .col(IncidentMembers::IntegrationId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .add_column(uuid_null(Events::IncidentId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookSubscriptions::Table)
                    .add_column(
                        string_len(WebhookSubscriptions::IncidentMembers, 16).default("suppress"),
                    )
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
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookSubscriptions::Table)
                    .drop_column(WebhookSubscriptions::IncidentMembers)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .drop_column(Events::IncidentId)
                    .to_owned(),
            )
            .await?;
        for table in [
            IncidentMembers::Table.into_iden(),
            Incidents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    TenantId,
    DomainKind,
    DomainValue,
    Reason,
    State,
    Title,
    MemberCount,
    FailingCount,
    OpenedAt,
    UpdatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum IncidentMembers {
    Table,
    IncidentId,
    IntegrationId,
    TenantId,
    Reason,
    JoinedAt,
    RecoveredAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    IncidentId,
}

#[derive(DeriveIden)]
enum WebhookSubscriptions {
    Table,
    IncidentMembers,
}
