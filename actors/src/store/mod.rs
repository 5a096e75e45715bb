//! The tenant-scoped data layer.
//!
//! [`Store`] holds the pool; [`Store::tenant`] hands out a [`TenantStore`], the only type with
//! methods that touch tenant data, so no query can be written without a tenant. On PostgreSQL,
//! every access first sets the row-level-security tenant for its transaction (`SET LOCAL`
//! semantics): if a filter below were ever missed, the database itself would still return only
//! the tenant's rows. Writes run in a transaction opened by `TenantStore::begin`; single-query
//! reads send the setting and the query as one message (`read`).
//!
//! Catalog mutations are `pub(crate)`: outside this crate they are reached through the catalog
//! actor. Maintenance windows and webhook subscriptions are not catalog rows; their writes are
//! public and, like the catalog's, carry their audit row in the same transaction.
//!
//! The daemon's own duties (the health engine, the relays, start-up checks) go through
//! [`Store::system`], a [`SystemStore`] whose transactions see every tenant. It is defined
//! once, in `system`; each module adds the system-wide reads and writes of its own tables in
//! an `impl SystemStore` block (results, summaries and retention in [`health`], the outbox in
//! [`events`], windows in [`maintenance`], credential references in [`references`], the incident
//! correlator's writes in [`incidents`]). Webhook
//! delivery has a view of its own, [`webhooks::WebhookStore`].

mod audit;
pub mod cluster;
pub mod events;
pub mod health;
pub mod incidents;
mod integrations;
pub mod keys;
pub mod maintenance;
pub mod plugins;
mod read;
pub mod references;
mod system;
pub mod webhooks;

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

pub use audit::{AuditEntry, AuditQuery, action as audit_action};
pub use integrations::{IntegrationChanges, IntegrationQuery, MonitoringChanges, NewIntegration};
pub use system::SystemStore;

use crate::tenant::TenantId;

/// Largest page any list returns.
pub const MAX_PAGE_SIZE: u64 = 200;

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// The cursor to pass for the next page; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` rows: the extra row only tells that more exist.
    fn from_rows(mut rows: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> C) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page { items: rows, next }
    }
}

/// Opens a transaction that sees every tenant's rows: on PostgreSQL it turns the row-level
/// security bypass on for this transaction only (`SET LOCAL` semantics). For the daemon's own
/// duties (the health writer, relays, housekeeping), never for a request. `write` takes
/// SQLite's write lock up front, so that two writers wait instead of failing on upgrade.
///
/// # Errors
/// [`DbErr`].
pub(crate) async fn begin_all_tenants(
    db: &DatabaseConnection,
    write: bool,
) -> Result<DatabaseTransaction, DbErr> {
    let backend = db.get_database_backend();
    let options = TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: (write && backend == DatabaseBackend::Sqlite)
            .then_some(SqliteTransactionMode::Immediate),
    };
    let txn = db.begin_with_options(options).await?;
    if backend == DatabaseBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT set_config($1, 'on', true)",
            [migration::rls::ALL_TENANTS_SETTING.into()],
        ))
        .await?;
    }
    Ok(txn)
}

/// The database, shared by every tenant.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Access to one tenant's data.
    pub fn tenant(&self, tenant: TenantId) -> TenantStore {
        TenantStore {
            db: self.db.clone(),
            tenant,
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// When it does not.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Whether every migration has been applied.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn is_migrated(&self) -> Result<bool, DbErr> {
        crate::db::is_migrated(&self.db).await
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }
}

/// One tenant's view of the catalog.
#[derive(Clone, Debug)]
pub struct TenantStore {
    db: DatabaseConnection,
    tenant: TenantId,
}

impl TenantStore {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Starts a transaction bound to this tenant. Writers take SQLite's write lock at once
    /// (`BEGIN IMMEDIATE`) so two writers never deadlock upgrading a read lock.
    async fn begin(&self, write: bool) -> Result<DatabaseTransaction, DbErr> {
        let backend = self.db.get_database_backend();
        let options = TransactionOptions {
            isolation_level: None,
            access_mode: None::<AccessMode>,
            sqlite_transaction_mode: (write && backend == DatabaseBackend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
        };
        let txn = self.db.begin_with_options(options).await?;
        if backend == DatabaseBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT set_config($1, $2, true)",
                [
                    migration::rls::TENANT_SETTING.into(),
                    self.tenant.as_str().into(),
                ],
            ))
            .await?;
        }
        Ok(txn)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A migrated database: in-memory SQLite, or a fresh PostgreSQL database when
    /// `STELLA_TEST_DATABASE=postgres` (see [`crate::db::testing`]).
    pub async fn store() -> Store {
        Store::new(crate::db::testing::database().await)
    }

    /// A migrated, fresh PostgreSQL database, whatever `STELLA_TEST_DATABASE` says.
    pub async fn postgres_store() -> Store {
        Store::new(crate::db::testing::postgres_database().await)
    }
}
