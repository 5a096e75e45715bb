//! One name for one concept: the webhook subscriptions and their deliveries were stored as
//! `alert_subscriptions` and `alert_deliveries`, while the API and the docs call them webhooks
//! (alerting, in this code base, is the noise control that decides what becomes an event).
//! Their signing secret's reference is named like every other AuthRef, `…_auth_ref_uri`.
//!
//! Renames only: no row is rewritten. On PostgreSQL a rename is a catalog change that takes its
//! table's lock for an instant; the row-level-security policies, indexes and grants follow the
//! table. Index names keep their old spelling (SQLite cannot rename an index, and nothing
//! refers to them by name).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const RENAMES: [(&str, &str); 2] = [
    ("alert_subscriptions", "webhook_subscriptions"),
    ("alert_deliveries", "webhook_deliveries"),
];

const COLUMN: (&str, &str, &str) = ("webhook_subscriptions", "secret_ref", "secret_auth_ref_uri");

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (old, new) in RENAMES {
            db.execute_unprepared(&format!("ALTER TABLE {old} RENAME TO {new}"))
                .await?;
        }
        let (table, old, new) = COLUMN;
        db.execute_unprepared(&format!("ALTER TABLE {table} RENAME COLUMN {old} TO {new}"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let (table, old, new) = COLUMN;
        db.execute_unprepared(&format!("ALTER TABLE {table} RENAME COLUMN {new} TO {old}"))
            .await?;
        for (old, new) in RENAMES {
            db.execute_unprepared(&format!("ALTER TABLE {new} RENAME TO {old}"))
                .await?;
        }
        Ok(())
    }
}
