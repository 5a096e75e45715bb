//! The catalog actor: every change to a tenant's catalog goes through it, and every committed
//! change is announced once on the [`ChangeFeed`].
//!
//! # Layout
//! - This file: the actor, a ractor factory keyed by tenant ([`KeyPersistentRouting`]): all
//!   writes of one tenant land on the same worker, in order, while other tenants' writes
//!   proceed on other workers. The factory's own mailbox only routes. Reads do not use the actor
//!   at all: they go straight to the pool through [`crate::TenantStore`].
//! - [`writes`]: the kinds of write (integrations, maintenance windows, webhook subscriptions,
//!   delivery retries), each one transaction with its audit row.
//! - [`changes`]: the change feed the health engine and the webhook worker follow.

pub mod changes;
pub mod writes;

use std::time::Duration;

use entity::integration::Model;
use entity::maintenance_window;
use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, FactoryRef, Job, Worker, WorkerId, queues,
    routing::KeyPersistentRouting, worker_builder,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, rpc::CallResult};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

pub use changes::{Change, ChangeFeed};
use writes::{
    DeliveryRetry, IntegrationWrite, SubscriptionDelete, SubscriptionWrite, WindowWrite, Write,
};

use crate::error::CatalogError;
use crate::store::maintenance::NewMaintenanceWindow;
use crate::store::webhooks::{Delivery, Subscription, SubscriptionFields};
use crate::store::{IntegrationChanges, MonitoringChanges, NewIntegration, Store, TenantStore};
use crate::tenant::TenantId;

/// Longest a caller waits for a write to finish.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One write to one tenant's catalog. `actor` is the subject recorded in the audit trail.
#[derive(Debug)]
pub struct WriteJob<W: Write> {
    actor: String,
    /// The span of the caller (the API request), which the write's span continues.
    caller: tracing::Span,
    write: W,
    reply: RpcReplyPort<Result<W::Output, CatalogError>>,
}

impl<W: Write> WriteJob<W> {
    /// Applies the write, announces what changed once it is committed, and answers.
    async fn run(self, tenant: &TenantStore, feed: &ChangeFeed) {
        let span = tracing::info_span!(
            parent: &self.caller,
            "catalog",
            tenant_id = %tenant.tenant(),
            action = self.write.action(),
            integration_id = tracing::field::Empty,
        );
        let result = self
            .write
            .apply(tenant, &self.actor)
            .instrument(span)
            .await
            .map(|(output, change)| {
                if let Some(change) = change {
                    feed.publish(change);
                }
                output
            });
        // A reply port whose caller gave up is not an error of the worker.
        let _ = self.reply.send(result);
    }
}

/// A message to the catalog: one write of one kind.
#[derive(Debug)]
pub enum CatalogMsg {
    Integration(WriteJob<IntegrationWrite>),
    Window(WriteJob<WindowWrite>),
    Subscription(WriteJob<SubscriptionWrite>),
    SubscriptionDelete(WriteJob<SubscriptionDelete>),
    DeliveryRetry(WriteJob<DeliveryRetry>),
}

/// The state of a catalog worker.
pub struct WorkerState {
    store: Store,
    feed: ChangeFeed,
}

// === impl CatalogWorker ===

/// One worker of the catalog factory.
struct CatalogWorker;

impl Worker for CatalogWorker {
    type Key = TenantId;
    type Message = CatalogMsg;
    type Arguments = (Store, ChangeFeed);
    type State = WorkerState;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<TenantId, CatalogMsg>>,
        (store, feed): (Store, ChangeFeed),
    ) -> Result<WorkerState, ActorProcessingErr> {
        Ok(WorkerState { store, feed })
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<TenantId, CatalogMsg>>,
        Job { key, msg, .. }: Job<TenantId, CatalogMsg>,
        state: &mut WorkerState,
    ) -> Result<TenantId, ActorProcessingErr> {
        let tenant = state.store.tenant(key.clone());
        let feed = &state.feed;
        match msg {
            CatalogMsg::Integration(job) => job.run(&tenant, feed).await,
            CatalogMsg::Window(job) => job.run(&tenant, feed).await,
            CatalogMsg::Subscription(job) => job.run(&tenant, feed).await,
            CatalogMsg::SubscriptionDelete(job) => job.run(&tenant, feed).await,
            CatalogMsg::DeliveryRetry(job) => job.run(&tenant, feed).await,
        }
        Ok(key)
    }
}

// === impl Catalog ===

/// A handle to the running catalog actor.
#[derive(Clone, Debug)]
pub struct Catalog {
    factory: FactoryRef<TenantId, CatalogMsg>,
}

impl Catalog {
    /// Starts the catalog factory with `workers` workers, announcing committed changes on
    /// `feed`.
    ///
    /// # Errors
    /// When the actor cannot be spawned.
    pub async fn start(
        store: Store,
        workers: usize,
        feed: ChangeFeed,
    ) -> Result<(Self, JoinHandle<()>), ractor::SpawnErr> {
        let factory = Factory::<
            TenantId,
            CatalogMsg,
            (Store, ChangeFeed),
            CatalogWorker,
            KeyPersistentRouting<TenantId, CatalogMsg>,
            queues::DefaultQueue<TenantId, CatalogMsg>,
        >::default();
        let args = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_wid| {
                (CatalogWorker, (store.clone(), feed.clone()))
            })))
            .queue(Default::default())
            .router(Default::default())
            .num_initial_workers(workers.max(1))
            .build();
        let (factory, handle) = Actor::spawn(None, factory, args).await?;
        Ok((Self { factory }, handle))
    }

    /// Stops the factory; in-flight jobs finish first.
    pub fn stop(&self) {
        self.factory.stop(None);
    }

    /// Sends one write to the tenant's worker and waits for its answer.
    async fn write<W: Write>(
        &self,
        tenant: &TenantId,
        actor: &str,
        write: W,
        wrap: fn(WriteJob<W>) -> CatalogMsg,
    ) -> Result<W::Output, CatalogError> {
        let actor = actor.to_owned();
        let caller = tracing::Span::current();
        let build = move |reply| {
            wrap(WriteJob {
                actor,
                caller,
                write,
                reply,
            })
        };
        match self
            .factory
            .call_job(tenant.clone(), build, Some(CALL_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => {
                Err(CatalogError::Unavailable)
            }
        }
    }

    /// Registers an integration.
    ///
    /// # Errors
    /// See [`crate::TenantStore`]'s mutations; [`CatalogError::Unavailable`] when stopped.
    pub async fn create(
        &self,
        tenant: &TenantId,
        actor: &str,
        new: NewIntegration,
    ) -> Result<Model, CatalogError> {
        let write = IntegrationWrite::Create(new);
        self.write(tenant, actor, write, CatalogMsg::Integration)
            .await
    }

    /// Replaces an integration's mutable fields.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn update(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: Uuid,
        changes: IntegrationChanges,
    ) -> Result<Model, CatalogError> {
        let write = IntegrationWrite::Update { id, changes };
        self.write(tenant, actor, write, CatalogMsg::Integration)
            .await
    }

    /// Pauses or resumes monitoring, or sets the check interval.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn set_monitoring(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: Uuid,
        changes: MonitoringChanges,
    ) -> Result<Model, CatalogError> {
        let write = IntegrationWrite::SetMonitoring { id, changes };
        self.write(tenant, actor, write, CatalogMsg::Integration)
            .await
    }

    /// Soft-deletes an integration.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn delete(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Model, CatalogError> {
        let write = IntegrationWrite::Delete {
            id,
            expected_version,
        };
        self.write(tenant, actor, write, CatalogMsg::Integration)
            .await
    }

    /// Adds a maintenance window to a live integration.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn window_create(
        &self,
        tenant: &TenantId,
        actor: &str,
        integration_id: Uuid,
        new: NewMaintenanceWindow,
    ) -> Result<maintenance_window::Model, CatalogError> {
        let write = WindowWrite::Create {
            integration_id,
            new,
        };
        self.write(tenant, actor, write, CatalogMsg::Window).await
    }

    /// Deletes a maintenance window.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn window_delete(
        &self,
        tenant: &TenantId,
        actor: &str,
        integration_id: Uuid,
        window_id: Uuid,
    ) -> Result<maintenance_window::Model, CatalogError> {
        let write = WindowWrite::Delete {
            integration_id,
            window_id,
        };
        self.write(tenant, actor, write, CatalogMsg::Window).await
    }

    /// Creates a webhook subscription.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn subscription_create(
        &self,
        tenant: &TenantId,
        actor: &str,
        fields: SubscriptionFields,
    ) -> Result<Subscription, CatalogError> {
        let write = SubscriptionWrite::Create(fields);
        self.write(tenant, actor, write, CatalogMsg::Subscription)
            .await
    }

    /// Replaces a webhook subscription's fields.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn subscription_update(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: Uuid,
        fields: SubscriptionFields,
        expected_version: Option<i64>,
    ) -> Result<Subscription, CatalogError> {
        let write = SubscriptionWrite::Update {
            id,
            fields,
            expected_version,
        };
        self.write(tenant, actor, write, CatalogMsg::Subscription)
            .await
    }

    /// Soft-deletes a webhook subscription; its pending deliveries become dead.
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn subscription_delete(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<(), CatalogError> {
        let write = SubscriptionDelete {
            id,
            expected_version,
        };
        self.write(tenant, actor, write, CatalogMsg::SubscriptionDelete)
            .await
    }

    /// Puts a dead delivery back in the queue; `None` when the subscription has no such delivery
    /// ([`CatalogError::Conflict`] when it is not dead).
    ///
    /// # Errors
    /// See [`Catalog::create`].
    pub async fn delivery_retry(
        &self,
        tenant: &TenantId,
        actor: &str,
        subscription_id: Uuid,
        delivery_id: i64,
    ) -> Result<Option<Delivery>, CatalogError> {
        let write = DeliveryRetry {
            subscription_id,
            delivery_id,
        };
        self.write(tenant, actor, write, CatalogMsg::DeliveryRetry)
            .await
    }
}

#[cfg(test)]
mod tests;
