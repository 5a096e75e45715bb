//! [`SystemStore`], the daemon's view across every tenant, and its reads of the live
//! integrations. The other system-wide duties extend it where their tables are: results,
//! summaries and retention in [`super::health`], the outbox in [`super::events`], maintenance
//! windows in [`super::maintenance`], credential references in [`super::references`].

use entity::integration;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::Store;

impl Store {
    /// The health engine's view: every tenant, for system tasks only (never reached from a
    /// request).
    pub fn system(&self) -> SystemStore {
        SystemStore {
            db: self.db.clone(),
        }
    }
}

/// System-wide access for the health engine. On PostgreSQL its transactions set
/// `stella.all_tenants`, the one way past the row-level-security policies.
#[derive(Clone, Debug)]
pub struct SystemStore {
    pub(super) db: DatabaseConnection,
}

// === impl SystemStore ===

impl SystemStore {
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        super::begin_all_tenants(&self.db, false).await
    }

    /// The rows of `select`, read in one all-tenant transaction.
    async fn integrations(
        &self,
        select: sea_orm::Select<integration::Entity>,
    ) -> Result<Vec<integration::Model>, DbErr> {
        let txn = self.begin().await?;
        let rows = select.all(&txn).await?;
        txn.commit().await?;
        Ok(rows)
    }

    /// An integration of any tenant, deleted or not.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn integration_any(&self, id: Uuid) -> Result<Option<integration::Model>, DbErr> {
        let txn = self.begin().await?;
        let row = integration::Entity::find_by_id(id).one(&txn).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Integrations of every tenant changed through the catalog at or after `since` (deleted
    /// ones too), oldest change first.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn integrations_changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: u64,
    ) -> Result<Vec<integration::Model>, DbErr> {
        self.integrations(
            integration::Entity::find()
                .filter(integration::Column::UpdatedAt.gte(since))
                .order_by_asc(integration::Column::UpdatedAt)
                .limit(limit),
        )
        .await
    }

    /// When each of `ids` was last checked, looking back to `since` (a monitor started
    /// elsewhere keeps the integration's phase).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn last_checks(
        &self,
        ids: &[Uuid],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::HashMap<Uuid, chrono::DateTime<chrono::Utc>>, DbErr> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let txn = self.begin().await?;
        let rows: Vec<(Uuid, Option<chrono::DateTime<chrono::Utc>>)> =
            entity::health_check::Entity::find()
                .select_only()
                .column(entity::health_check::Column::IntegrationId)
                .column_as(entity::health_check::Column::CheckedAt.max(), "last")
                .filter(entity::health_check::Column::IntegrationId.is_in(ids.iter().copied()))
                .filter(entity::health_check::Column::CheckedAt.gte(since))
                .group_by(entity::health_check::Column::IntegrationId)
                .into_tuple()
                .all(&txn)
                .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, last)| Some((id, last?)))
            .collect())
    }

    /// The last outbox sequence number committed (0 for an empty outbox).
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn last_seq(&self) -> Result<i64, DbErr> {
        let txn = self.begin().await?;
        let last = entity::event::Entity::find()
            .order_by_desc(entity::event::Column::Seq)
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(last.map_or(0, |e| e.seq))
    }

    /// A page of live integrations of every tenant, by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn live_integrations(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<integration::Model>, DbErr> {
        let mut select =
            integration::Entity::find().filter(integration::Column::DeletedAt.is_null());
        if let Some(after) = after {
            select = select.filter(integration::Column::Id.gt(after));
        }
        self.integrations(select.order_by_asc(integration::Column::Id).limit(limit))
            .await
    }

    /// A page of live integrations of one provider type, by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn live_integrations_of_type(
        &self,
        provider_type: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<integration::Model>, DbErr> {
        let mut select = integration::Entity::find()
            .filter(integration::Column::DeletedAt.is_null())
            .filter(integration::Column::ProviderType.eq(provider_type));
        if let Some(after) = after {
            select = select.filter(integration::Column::Id.gt(after));
        }
        self.integrations(select.order_by_asc(integration::Column::Id).limit(limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use uuid::Uuid;

    use crate::store::health::CheckRow;
    use crate::store::testing;

    fn row(id: Uuid, ago: i64) -> CheckRow {
        CheckRow {
            integration_id: id,
            tenant_id: "t".into(),
            checked_at: Utc::now() - Duration::seconds(ago),
            status: "healthy",
            reason: None,
            latency_ms: 1,
            error_message: None,
            folded: None,
        }
    }

    #[tokio::test]
    async fn the_last_check_of_each_integration_within_the_look_back() {
        let store = testing::store().await;
        let system = store.system();
        let (a, b, old) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let rows = [row(a, 50), row(a, 10), row(b, 30), row(old, 500)];
        system.write_results(&rows, &[], &[]).await.unwrap();
        let last = system
            .last_checks(&[a, b, old], Utc::now() - Duration::seconds(100))
            .await
            .unwrap();
        assert_eq!(last.len(), 2, "{last:?}");
        assert_eq!(last[&a].timestamp(), rows[1].checked_at.timestamp());
        assert_eq!(last[&b].timestamp(), rows[2].checked_at.timestamp());
    }
}
