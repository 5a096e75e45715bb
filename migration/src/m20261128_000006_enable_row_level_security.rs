//! Row-level security on the tenant tables (PostgreSQL only; SQLite has none).
//!
//! A row is visible when its `tenant_id` equals the transaction's `stella.tenant_id` setting,
//! or when a system task set `stella.all_tenants = 'on'`. With neither set, nothing is
//! visible. `FORCE` makes the policy bind the table owner too; superusers and roles with
//! `BYPASSRLS` still bypass it, which is why the daemon warns when it connects as one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::rls::{ALL_TENANTS_SETTING, TENANT_SETTING, TENANT_TABLES};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in TENANT_TABLES {
            let predicate = format!(
                "tenant_id = current_setting('{TENANT_SETTING}', true) \
                 OR current_setting('{ALL_TENANTS_SETTING}', true) = 'on'"
            );
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in TENANT_TABLES {
            for statement in [
                format!("DROP POLICY IF EXISTS tenant_isolation ON {table}"),
                format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
            ] {
                db.execute_unprepared(&statement).await?;
            }
        }
        Ok(())
    }
}
