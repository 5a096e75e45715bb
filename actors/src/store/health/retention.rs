//! Retention: results and hourly summaries older than their cut-off are deleted, results a
//! batch at a time.

use chrono::{DateTime, Utc};
use entity::{health_check, health_summary};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::store::SystemStore;

impl SystemStore {
    /// Deletes up to `batch` results checked before `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_checks(&self, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, DbErr> {
        let txn = self.begin().await?;
        let ids: Vec<i64> = health_check::Entity::find()
            .select_only()
            .column(health_check::Column::Id)
            .filter(health_check::Column::CheckedAt.lt(cutoff))
            .order_by_asc(health_check::Column::CheckedAt)
            .limit(batch)
            .into_tuple()
            .all(&txn)
            .await?;
        let deleted = if ids.is_empty() {
            0
        } else {
            health_check::Entity::delete_many()
                .filter(health_check::Column::Id.is_in(ids))
                .exec(&txn)
                .await?
                .rows_affected
        };
        txn.commit().await?;
        Ok(deleted)
    }

    /// Deletes the hourly summaries older than `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn prune_summaries(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        let txn = self.begin().await?;
        let deleted = health_summary::Entity::delete_many()
            .filter(health_summary::Column::Hour.lt(cutoff))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(deleted)
    }
}
