//! Queries and mutations of the `integrations` table, each scoped to one tenant.

use chrono::Utc;
use entity::integration::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{MAX_PAGE_SIZE, Page, TenantStore, audit};
use crate::error::CatalogError;

const KIND: &str = "integration";

/// Status of an integration that has not been checked yet.
pub const STATUS_UNKNOWN: &str = "unknown";

/// A validated request to register an integration.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub provider_type: String,
    pub name: String,
    pub config: Map<String, Value>,
    pub auth_ref_uri: Option<String>,
}

/// A validated replacement of an integration's mutable fields.
#[derive(Debug, Clone)]
pub struct IntegrationChanges {
    pub name: String,
    pub config: Map<String, Value>,
    pub auth_ref_uri: Option<String>,
    /// When set, the change applies only if this is still the current version.
    pub expected_version: Option<i64>,
}

/// A change of how an integration is monitored; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct MonitoringChanges {
    pub paused: Option<bool>,
    /// `Some(None)` returns to the daemon's default interval.
    pub interval_seconds: Option<Option<i32>>,
    pub expected_version: Option<i64>,
}

/// Which integrations to list.
#[derive(Debug, Clone, Default)]
pub struct IntegrationQuery {
    pub provider_type: Option<String>,
    /// Only integrations whose health status is this (`healthy`, `unhealthy`, …).
    pub status: Option<String>,
    /// Start after this id (the previous page's cursor).
    pub after: Option<Uuid>,
    /// Page size, capped at [`MAX_PAGE_SIZE`].
    pub limit: u64,
}

/// The audit action recorded when the hosts an integration's configuration points at change.
pub const ACTION_TARGET_HOST: &str = super::audit::action::INTEGRATION_TARGET_HOST;

/// The hosts (`host` or `host:port`) of every absolute URL in an integration's configuration:
/// where its credentials go.
fn target_hosts(m: &Model) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, hosts: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::String(s) => {
                if let Some(url) = connectors::url_check::as_url(s)
                    && let Some(host) = url.host_str()
                {
                    hosts.insert(match url.port() {
                        Some(port) => format!("{host}:{port}"),
                        None => host.to_owned(),
                    });
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, hosts)),
            Value::Object(fields) => fields.values().for_each(|v| walk(v, hosts)),
            _ => {}
        }
    }
    let mut hosts = std::collections::BTreeSet::new();
    walk(&m.config_json, &mut hosts);
    hosts
}

/// What the audit trail records of an integration: everything but secrets.
fn snapshot(m: &Model) -> Value {
    json!({
        "type": m.provider_type,
        "name": m.name,
        "config": connectors::config::redact(&m.config_json),
        "authRef": m.auth_ref_uri,
        "monitoringPaused": m.monitoring_paused,
        "checkIntervalSeconds": m.check_interval_seconds,
        "version": m.version,
    })
}

fn name_conflict(e: DbErr) -> CatalogError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => CatalogError::Conflict {
            field: "name",
            message: "an integration with this name already exists in the tenant".into(),
        },
        _ => CatalogError::Db(e),
    }
}

impl TenantStore {
    pub(super) fn live(&self) -> sea_orm::Select<Entity> {
        Entity::find()
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::DeletedAt.is_null())
    }

    /// One live integration of the tenant.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when it does not exist, is deleted, or is another tenant's.
    pub async fn integration_get(&self, id: Uuid) -> Result<Model, CatalogError> {
        let found = self.read_one(self.live().filter(Column::Id.eq(id))).await?;
        found.ok_or(CatalogError::NotFound { kind: KIND, id })
    }

    /// A page of the tenant's live integrations, in creation order.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn integration_list(
        &self,
        query: &IntegrationQuery,
    ) -> Result<Page<Model, Uuid>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let mut select = self.live();
        if let Some(t) = &query.provider_type {
            select = select.filter(Column::ProviderType.eq(t.as_str()));
        }
        if let Some(status) = &query.status {
            select = select.filter(Column::Status.eq(status.as_str()));
        }
        if let Some(after) = query.after {
            select = select.filter(Column::Id.gt(after));
        }
        let rows = self
            .read_all(select.order_by_asc(Column::Id).limit(limit + 1))
            .await?;
        Ok(Page::from_rows(rows, limit, |m| m.id))
    }

    /// Registers an integration and records it in the audit trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::Conflict`] when the name is taken by a live integration of the tenant.
    pub(crate) async fn integration_create(
        &self,
        actor: &str,
        new: NewIntegration,
    ) -> Result<Model, CatalogError> {
        let now = Utc::now();
        let row = ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant.as_str().to_owned()),
            provider_type: Set(new.provider_type),
            name: Set(new.name),
            config_json: Set(Value::Object(new.config)),
            auth_ref_uri: Set(new.auth_ref_uri),
            status: Set(STATUS_UNKNOWN.to_owned()),
            status_reason: Set(None),
            last_checked_at: Set(None),
            monitoring_paused: Set(false),
            check_interval_seconds: Set(None),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        };
        let txn = self.begin(true).await?;
        let created = Entity::insert(row)
            .exec_with_returning(&txn)
            .await
            .map_err(name_conflict)?;
        let details = json!({ "before": null, "after": snapshot(&created) });
        audit::record(
            &txn,
            self,
            actor,
            super::audit::action::INTEGRATION_CREATE,
            Some(created.id),
            details,
        )
        .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Replaces an integration's name, config and AuthRef, bumping its version, and records the
    /// change in the audit trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::VersionMismatch`] on a stale version,
    /// [`CatalogError::Conflict`] on a name clash.
    pub(crate) async fn integration_update(
        &self,
        actor: &str,
        id: Uuid,
        changes: IntegrationChanges,
    ) -> Result<Model, CatalogError> {
        self.change(
            actor,
            id,
            changes.expected_version,
            super::audit::action::INTEGRATION_UPDATE,
            |m| {
                m.name = changes.name;
                m.config_json = Value::Object(changes.config);
                m.auth_ref_uri = changes.auth_ref_uri;
            },
        )
        .await
    }

    /// Pauses or resumes monitoring, or sets the check interval, bumping the version and
    /// recording the change in the audit trail, in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], or [`CatalogError::VersionMismatch`] on a stale version.
    pub(crate) async fn integration_set_monitoring(
        &self,
        actor: &str,
        id: Uuid,
        changes: MonitoringChanges,
    ) -> Result<Model, CatalogError> {
        self.change(
            actor,
            id,
            changes.expected_version,
            super::audit::action::INTEGRATION_MONITORING,
            |m| {
                if let Some(paused) = changes.paused {
                    m.monitoring_paused = paused;
                }
                if let Some(interval) = changes.interval_seconds {
                    m.check_interval_seconds = interval;
                }
            },
        )
        .await
    }

    /// Soft-deletes an integration: it disappears from every read, its audit rows stay.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], or [`CatalogError::VersionMismatch`] on a stale version.
    pub(crate) async fn integration_delete(
        &self,
        actor: &str,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Model, CatalogError> {
        self.change(
            actor,
            id,
            expected_version,
            super::audit::action::INTEGRATION_DELETE,
            |m| {
                m.deleted_at = Some(Utc::now());
            },
        )
        .await
    }

    /// Applies `apply` to the live integration `id` at `expected_version` (any when `None`),
    /// bumps its version, writes it only if nobody changed it meanwhile, and records `action`
    /// with the redacted before and after in the audit trail, all in one transaction.
    async fn change(
        &self,
        actor: &str,
        id: Uuid,
        expected_version: Option<i64>,
        action: &str,
        apply: impl FnOnce(&mut Model),
    ) -> Result<Model, CatalogError> {
        let txn = self.begin(true).await?;
        let current = self
            .live()
            .filter(Column::Id.eq(id))
            .one(&txn)
            .await?
            .ok_or(CatalogError::NotFound { kind: KIND, id })?;
        check_version(expected_version, current.version)?;
        let mut next = current.clone();
        apply(&mut next);
        next.version = current.version + 1;
        next.updated_at = Utc::now();
        self.write_guarded(&txn, &current, &next).await?;
        let after = if next.deleted_at.is_some() {
            Value::Null
        } else {
            snapshot(&next)
        };
        let details = json!({ "before": snapshot(&current), "after": after });
        audit::record(&txn, self, actor, action, Some(id), details).await?;
        let (before, after) = (target_hosts(&current), target_hosts(&next));
        if next.deleted_at.is_none() && before != after {
            // Where the integration's credentials are sent changed: its own audit row, so
            // that a review of credential destinations needs no diff of configurations.
            let details = json!({ "before": before, "after": after });
            audit::record(&txn, self, actor, ACTION_TARGET_HOST, Some(id), details).await?;
        }
        txn.commit().await?;
        Ok(next)
    }

    /// Writes `next` over `current` only if nobody changed the row in between.
    async fn write_guarded(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        current: &Model,
        next: &Model,
    ) -> Result<(), CatalogError> {
        let row = ActiveModel {
            name: Set(next.name.clone()),
            config_json: Set(next.config_json.clone()),
            auth_ref_uri: Set(next.auth_ref_uri.clone()),
            monitoring_paused: Set(next.monitoring_paused),
            check_interval_seconds: Set(next.check_interval_seconds),
            version: Set(next.version),
            updated_at: Set(next.updated_at),
            deleted_at: Set(next.deleted_at),
            ..Default::default()
        };
        let result = Entity::update_many()
            .set(row)
            .filter(Column::Id.eq(current.id))
            .filter(Column::TenantId.eq(self.tenant.as_str()))
            .filter(Column::Version.eq(current.version))
            .exec(txn)
            .await
            .map_err(name_conflict)?;
        if result.rows_affected == 0 {
            return Err(CatalogError::VersionMismatch {
                expected: current.version,
                current: current.version + 1,
            });
        }
        Ok(())
    }
}

fn check_version(expected: Option<i64>, current: i64) -> Result<(), CatalogError> {
    match expected {
        Some(expected) if expected != current => {
            Err(CatalogError::VersionMismatch { expected, current })
        }
        _ => Ok(()),
    }
}
