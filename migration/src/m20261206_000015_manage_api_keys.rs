//! API keys managed through the API (`/api/v1/api-keys`): each key gets a name, an optional
//! expiry (and when its expiry warning was emitted), the time it was last used, and who
//! created it. Managing keys is a tenant's business,
//! so the table becomes a tenant table: row-level security binds it on PostgreSQL like the
//! others, and authentication (which must find a key before it knows the tenant) reads it
//! through the all-tenants setting of a system task.

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING};

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_api_keys_tenant_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in [
            string_len_null(ApiKeys::Name, 128),
            timestamp_with_time_zone_null(ApiKeys::ExpiresAt),
            timestamp_with_time_zone_null(ApiKeys::LastUsedAt),
            string_len_null(ApiKeys::CreatedBy, 256),
            // When the warning that the key expires soon was emitted: each key is warned once.
            timestamp_with_time_zone_null(ApiKeys::ExpiryWarnedAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(INDEX)
                    .table(ApiKeys::Table)
                    .col(ApiKeys::TenantId)
                    .col(ApiKeys::CreatedAt)
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
                "ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY".to_owned(),
                "ALTER TABLE api_keys FORCE ROW LEVEL SECURITY".to_owned(),
                format!(
                    "CREATE POLICY tenant_isolation ON api_keys \
                     USING ({predicate}) WITH CHECK ({predicate})"
                ),
            ] {
                db.execute_unprepared(&statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            for statement in [
                "DROP POLICY IF EXISTS tenant_isolation ON api_keys",
                "ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY",
                "ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY",
            ] {
                db.execute_unprepared(statement).await?;
            }
        }
        manager
            .drop_index(Index::drop().name(INDEX).table(ApiKeys::Table).to_owned())
            .await?;
        for column in [
            ApiKeys::ExpiryWarnedAt,
            ApiKeys::CreatedBy,
            ApiKeys::LastUsedAt,
            ApiKeys::ExpiresAt,
            ApiKeys::Name,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    TenantId,
    CreatedAt,
    Name,
    ExpiresAt,
    LastUsedAt,
    CreatedBy,
    ExpiryWarnedAt,
}
