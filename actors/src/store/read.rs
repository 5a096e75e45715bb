//! Tenant reads in two round trips.
//!
//! A read through [`TenantStore::begin`] costs four round trips on PostgreSQL (`BEGIN`, the
//! row-level-security setting, the query, `COMMIT`). A single `SELECT` needs the setting but
//! not a commit, so on PostgreSQL it takes two:
//!
//! 1. `BEGIN READ ONLY; SET LOCAL stella.tenant_id = '<tenant>'` as one simple-protocol message
//!    (the tenant id needs no escaping: its alphabet has no quote or backslash, see
//!    [`crate::tenant::TenantId`]);
//! 2. the query itself, prepared and cached per connection, its values bound and its rows in
//!    binary format, like every other sea-orm query.
//!
//! The transaction is then dropped, not committed: sqlx queues its `ROLLBACK` and sends it with
//! the check the pool makes on every returned connection, so the setting ends with the read and
//! costs the caller no further wait.
//!
//! SQLite has no row-level security and a lone `SELECT` is atomic, so there the query simply
//! runs on the pool.

use sea_orm::sqlx::{self, Connection, postgres::PgRow};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult, QueryResult,
    QuerySelect, QueryTrait, RuntimeErr, Select, Statement,
};
use sea_query_sqlx::SqlxValues;

use super::TenantStore;

impl TenantStore {
    /// Every row `select` finds, read with the tenant's row-level-security setting.
    pub(super) async fn read_all<E: EntityTrait>(
        &self,
        select: Select<E>,
    ) -> Result<Vec<E::Model>, DbErr> {
        let rows = self
            .query_rows(select.build(self.db.get_database_backend()))
            .await?;
        rows.iter()
            .map(|row| E::Model::from_query_result(row, ""))
            .collect()
    }

    /// The first row `select` finds, read with the tenant's row-level-security setting.
    pub(super) async fn read_one<E: EntityTrait>(
        &self,
        select: Select<E>,
    ) -> Result<Option<E::Model>, DbErr> {
        Ok(self.read_all(select.limit(1)).await?.into_iter().next())
    }

    async fn query_rows(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return self.db.query_all_raw(statement).await;
        }
        let rows = self
            .query_postgres(statement)
            .await
            .map_err(|e| DbErr::Query(RuntimeErr::SqlxError(e.into())))?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }

    async fn query_postgres(&self, statement: Statement) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut conn = self.db.get_postgres_connection_pool().acquire().await?;
        let begin = begin_for(self.tenant.as_str());
        let mut txn = conn.begin_with(sqlx::AssertSqlSafe(begin)).await?;
        let values = SqlxValues(statement.values.unwrap_or(sea_orm::Values(Vec::new())));
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), values)
            .fetch_all(&mut *txn)
            .await?;
        // Dropping queues the ROLLBACK; the pool sends it when the connection comes back.
        drop(txn);
        Ok(rows)
    }
}

/// The message that opens a read-only transaction bound to `tenant`.
fn begin_for(tenant: &str) -> String {
    debug_assert!(crate::tenant::TenantId::new(tenant).is_ok());
    format!(
        "BEGIN READ ONLY; SET LOCAL {} = '{tenant}'",
        migration::rls::TENANT_SETTING
    )
}

#[cfg(test)]
mod tests {
    use entity::integration::Entity;
    use serde_json::Map;

    use super::*;
    use crate::store::{IntegrationQuery, NewIntegration, testing};
    use crate::tenant::TenantId;

    async fn register(store: &TenantStore, name: &str) {
        let new = NewIntegration {
            provider_type: "inmemory".into(),
            name: name.into(),
            config: Map::new(),
            auth_ref_uri: None,
        };
        store.integration_create("tester", new).await.unwrap();
    }

    /// On PostgreSQL the one-message read is filtered by row-level security alone: a query with
    /// no tenant filter at all returns the tenant's rows only, and the setting does not outlive
    /// the read on the pooled connection.
    #[tokio::test]
    async fn row_level_security_alone_scopes_a_one_message_read() {
        let store = testing::store().await;
        let a = store.tenant(TenantId::new("tenant-a").unwrap());
        let b = store.tenant(TenantId::new("tenant-b").unwrap());
        register(&a, "a1").await;
        register(&a, "a2").await;
        register(&b, "b1").await;

        let unfiltered = a.read_all(Entity::find()).await.unwrap();
        if store.backend() != DatabaseBackend::Postgres {
            // SQLite has no row-level security: the tenant filters are all there is.
            assert_eq!(unfiltered.len(), 3);
            return;
        }
        let mut names: Vec<_> = unfiltered.into_iter().map(|m| m.name).collect();
        names.sort();
        assert_eq!(names, ["a1", "a2"]);
        let of_b = b.read_one(Entity::find()).await.unwrap().unwrap();
        assert_eq!(of_b.name, "b1");

        // Every pooled connection is back to no tenant: an unscoped count sees nothing.
        for _ in 0..8 {
            let row = store
                .db
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT count(*) AS n, current_setting('stella.tenant_id', true) AS t \
                     FROM integrations",
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
            let setting: Option<String> = row.try_get("", "t").unwrap();
            assert!(setting.unwrap_or_default().is_empty());
        }
    }

    /// Quotes, backslashes and semicolons in a filter value are data, on both stores.
    #[tokio::test]
    async fn hostile_filter_values_are_data() {
        let store = testing::store().await;
        let a = store.tenant(TenantId::new("tenant-a").unwrap());
        register(&a, "a1").await;
        for hostile in [
            "x'; DROP TABLE integrations; --",
            r"x\'; SELECT 1; --",
            "\u{2019}' OR '1'='1",
            "$$; SELECT 1; $$",
        ] {
            let page = a
                .integration_list(&IntegrationQuery {
                    provider_type: Some(hostile.into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(page.items.is_empty(), "{hostile}");
        }
        let all = a
            .integration_list(&IntegrationQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.items.len(), 1);
    }

    #[test]
    fn the_transaction_is_read_only_and_bound_to_the_tenant() {
        assert_eq!(
            begin_for("acme-prod_1.eu"),
            "BEGIN READ ONLY; SET LOCAL stella.tenant_id = 'acme-prod_1.eu'"
        );
    }
}
