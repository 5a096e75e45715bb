//! `plugin_metadata`: what the plugin registry knows. Global, not tenant data.

use chrono::Utc;
use entity::plugin_metadata::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use super::Store;

/// A plugin to record.
#[derive(Debug, Clone)]
pub struct PluginRow {
    pub plugin_id: String,
    pub provider_type: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// Where an external plugin lives; `None` for built-ins.
    pub path: Option<String>,
    pub fingerprint: Option<String>,
}

impl Store {
    /// Every known plugin, by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn plugins(&self) -> Result<Vec<Model>, DbErr> {
        Entity::find()
            .order_by_asc(Column::PluginId)
            .all(&self.db)
            .await
    }

    /// Inserts or replaces plugin rows.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn plugins_upsert(&self, rows: &[PluginRow]) -> Result<(), DbErr> {
        for r in rows {
            // A type moves between plugin ids only through a removal, so clear it first.
            Entity::delete_many()
                .filter(Column::ProviderType.eq(r.provider_type.as_str()))
                .filter(Column::PluginId.ne(r.plugin_id.as_str()))
                .exec(&self.db)
                .await?;
            let row = ActiveModel {
                plugin_id: Set(r.plugin_id.clone()),
                provider_type: Set(r.provider_type.clone()),
                version: Set(r.version.clone()),
                capabilities: Set(Value::from(r.capabilities.clone())),
                path: Set(r.path.clone()),
                discovered_at: Set(Utc::now()),
                fingerprint: Set(r.fingerprint.clone()),
            };
            Entity::insert(row)
                .on_conflict(
                    OnConflict::column(Column::PluginId)
                        .update_columns([
                            Column::ProviderType,
                            Column::Version,
                            Column::Capabilities,
                            Column::Path,
                            Column::DiscoveredAt,
                            Column::Fingerprint,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Forgets plugins by id.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn plugins_delete(&self, ids: &[String]) -> Result<(), DbErr> {
        if ids.is_empty() {
            return Ok(());
        }
        Entity::delete_many()
            .filter(Column::PluginId.is_in(ids.iter().map(String::as_str)))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
