//! The writes the catalog actor applies. Each commits in one transaction with its audit row
//! (see [`TenantStore`]'s mutations) and names the [`Change`] it made.
//!
//! Adding a kind of write: a type implementing [`Write`], a variant of
//! [`CatalogMsg`](super::CatalogMsg) and a method on [`Catalog`](super::Catalog).

use entity::integration::Model;
use entity::maintenance_window;
use tracing::Span;
use uuid::Uuid;

use super::changes::Change;
use crate::error::CatalogError;
use crate::store::maintenance::{NewMaintenanceWindow, window_of};
use crate::store::webhooks::{Delivery, Subscription, SubscriptionFields};
use crate::store::{IntegrationChanges, MonitoringChanges, NewIntegration, TenantStore};

/// One kind of catalog write.
pub trait Write: std::fmt::Debug + Send + 'static {
    type Output: std::fmt::Debug + Send + 'static;

    /// What the write does, for its span (`create`, `window.delete`, …).
    fn action(&self) -> &'static str;

    /// Commits the write as `actor` and says what changed (nothing when the write was a no-op).
    fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> impl Future<Output = Result<(Self::Output, Option<Change>), CatalogError>> + Send;
}

/// A change to an integration.
#[derive(Debug)]
pub enum IntegrationWrite {
    Create(NewIntegration),
    Update {
        id: Uuid,
        changes: IntegrationChanges,
    },
    Delete {
        id: Uuid,
        expected_version: Option<i64>,
    },
    SetMonitoring {
        id: Uuid,
        changes: MonitoringChanges,
    },
}

impl Write for IntegrationWrite {
    type Output = Model;

    fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Update { .. } => "update",
            Self::Delete { .. } => "delete",
            Self::SetMonitoring { .. } => "monitoring",
        }
    }

    async fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> Result<(Model, Option<Change>), CatalogError> {
        let action = self.action();
        if let Self::Update { id, .. } | Self::Delete { id, .. } | Self::SetMonitoring { id, .. } =
            &self
        {
            Span::current().record("integration_id", tracing::field::display(id));
        }
        let (model, deleted) = match self {
            Self::Create(new) => (tenant.integration_create(actor, new).await?, false),
            Self::Update { id, changes } => {
                (tenant.integration_update(actor, id, changes).await?, false)
            }
            Self::Delete {
                id,
                expected_version,
            } => (
                tenant
                    .integration_delete(actor, id, expected_version)
                    .await?,
                true,
            ),
            Self::SetMonitoring { id, changes } => (
                tenant
                    .integration_set_monitoring(actor, id, changes)
                    .await?,
                false,
            ),
        };
        Span::current().record("integration_id", tracing::field::display(model.id));
        crud_committed(action);
        let change = if deleted {
            Change::IntegrationDeleted {
                tenant: tenant.tenant().clone(),
                id: model.id,
            }
        } else {
            Change::IntegrationUpserted(std::sync::Arc::new(model.clone()))
        };
        Ok((model, Some(change)))
    }
}

/// A change to an integration's maintenance windows.
#[derive(Debug)]
pub enum WindowWrite {
    Create {
        integration_id: Uuid,
        new: NewMaintenanceWindow,
    },
    Delete {
        integration_id: Uuid,
        window_id: Uuid,
    },
}

impl Write for WindowWrite {
    type Output = maintenance_window::Model;

    fn action(&self) -> &'static str {
        match self {
            Self::Create { .. } => "window.create",
            Self::Delete { .. } => "window.delete",
        }
    }

    async fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> Result<(Self::Output, Option<Change>), CatalogError> {
        match self {
            Self::Create {
                integration_id,
                new,
            } => {
                Span::current().record("integration_id", tracing::field::display(integration_id));
                let created = tenant
                    .maintenance_create(actor, integration_id, new)
                    .await?;
                let change = Change::WindowCreated(window_of(&created));
                Ok((created, Some(change)))
            }
            Self::Delete {
                integration_id,
                window_id,
            } => {
                Span::current().record("integration_id", tracing::field::display(integration_id));
                let deleted = tenant
                    .maintenance_delete(actor, integration_id, window_id)
                    .await?;
                let change = Change::WindowDeleted {
                    tenant: tenant.tenant().clone(),
                    integration_id,
                    window_id,
                };
                Ok((deleted, Some(change)))
            }
        }
    }
}

/// A webhook subscription created or replaced.
#[derive(Debug)]
pub enum SubscriptionWrite {
    Create(SubscriptionFields),
    Update {
        id: Uuid,
        fields: SubscriptionFields,
        expected_version: Option<i64>,
    },
}

impl Write for SubscriptionWrite {
    type Output = Subscription;

    fn action(&self) -> &'static str {
        match self {
            Self::Create(_) => "subscription.create",
            Self::Update { .. } => "subscription.update",
        }
    }

    async fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> Result<(Self::Output, Option<Change>), CatalogError> {
        let written = match self {
            Self::Create(fields) => tenant.subscription_create(actor, fields).await?,
            Self::Update {
                id,
                fields,
                expected_version,
            } => {
                tenant
                    .subscription_update(actor, id, fields, expected_version)
                    .await?
            }
        };
        let change = Change::SubscriptionChanged {
            tenant: tenant.tenant().clone(),
            id: written.id,
        };
        Ok((written, Some(change)))
    }
}

/// A webhook subscription soft-deleted; its pending deliveries become dead.
#[derive(Debug)]
pub struct SubscriptionDelete {
    pub id: Uuid,
    pub expected_version: Option<i64>,
}

impl Write for SubscriptionDelete {
    type Output = ();

    fn action(&self) -> &'static str {
        "subscription.delete"
    }

    async fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> Result<(Self::Output, Option<Change>), CatalogError> {
        tenant
            .subscription_delete(actor, self.id, self.expected_version)
            .await?;
        let change = Change::SubscriptionChanged {
            tenant: tenant.tenant().clone(),
            id: self.id,
        };
        Ok(((), Some(change)))
    }
}

/// Puts a dead delivery back in the queue; `None` when the subscription has no such delivery.
#[derive(Debug)]
pub struct DeliveryRetry {
    pub subscription_id: Uuid,
    pub delivery_id: i64,
}

impl Write for DeliveryRetry {
    type Output = Option<Delivery>;

    fn action(&self) -> &'static str {
        "delivery.retry"
    }

    async fn apply(
        self,
        tenant: &TenantStore,
        actor: &str,
    ) -> Result<(Self::Output, Option<Change>), CatalogError> {
        let requeued = tenant
            .delivery_retry(actor, self.subscription_id, self.delivery_id)
            .await?;
        let change = requeued.as_ref().map(|_| Change::DeliveryRequeued {
            tenant: tenant.tenant().clone(),
            subscription_id: self.subscription_id,
        });
        Ok((requeued, change))
    }
}

/// `integration_crud_total{action}`: integration changes committed (`create`, `update`,
/// `delete`, `monitoring`). The name is the platform's; its dashboards expect it.
fn crud_committed(action: &'static str) {
    static CRUD: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    CRUD.get_or_init(|| {
        // Counters get the `_total` suffix in Prometheus text.
        opentelemetry::global::meter("stella-integrations")
            .u64_counter("integration_crud")
            .with_unit("{change}")
            .with_description("Catalog changes committed, by action.")
            .build()
    })
    .add(1, &[opentelemetry::KeyValue::new("action", action)]);
}
