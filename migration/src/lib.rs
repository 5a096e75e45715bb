//! Schema migrations of the integrations catalog.
//!
//! # Layout
//! One `mYYYYMMDD_NNNNNN_name.rs` file per migration, listed in order in
//! [`Migrator::migrations`]. The same migrations run on SQLite (the embedded default) and on
//! PostgreSQL (the production store); the few statements that differ are chosen by backend
//! inside a migration.
//!
//! Row-level security exists on PostgreSQL only ([`rls`]): the tenant tables are filtered by a
//! per-transaction setting, so a query that forgot its tenant filter still sees nothing.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_integration;
mod m20261128_000002_create_health_check;
mod m20261128_000003_create_audit_log;
mod m20261128_000004_create_plugin_metadata;
mod m20261128_000005_create_api_key;
mod m20261128_000006_enable_row_level_security;
mod m20261128_000007_create_health_monitoring;
mod m20261128_000008_add_plugin_fingerprint;
mod m20261128_000009_create_events;
mod m20261206_000010_rename_alert_to_webhook;
mod m20261206_000011_partition_health_history;
mod m20261206_000012_create_cluster;
mod m20261206_000013_create_incidents;
mod m20261206_000014_webhook_batching;
mod m20261206_000015_manage_api_keys;
mod m20261206_000016_target_certificates;
pub mod rls;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_integration::Migration),
            Box::new(m20261128_000002_create_health_check::Migration),
            Box::new(m20261128_000003_create_audit_log::Migration),
            Box::new(m20261128_000004_create_plugin_metadata::Migration),
            Box::new(m20261128_000005_create_api_key::Migration),
            Box::new(m20261128_000006_enable_row_level_security::Migration),
            Box::new(m20261128_000007_create_health_monitoring::Migration),
            Box::new(m20261128_000008_add_plugin_fingerprint::Migration),
            Box::new(m20261128_000009_create_events::Migration),
            Box::new(m20261206_000010_rename_alert_to_webhook::Migration),
            Box::new(m20261206_000011_partition_health_history::Migration),
            Box::new(m20261206_000012_create_cluster::Migration),
            Box::new(m20261206_000013_create_incidents::Migration),
            Box::new(m20261206_000014_webhook_batching::Migration),
            Box::new(m20261206_000015_manage_api_keys::Migration),
            Box::new(m20261206_000016_target_certificates::Migration),
        ]
    }
}
