//! The catalog actor: every change to the catalog goes through it.
//!
//! It is a ractor factory keyed by tenant ([`KeyPersistentRouting`]): all writes of one tenant
//! land on the same worker, in order, while other tenants' writes proceed on other workers.
//! The factory's own mailbox only routes. Reads do not use the actor at all: they go straight
//! to the pool through [`crate::TenantStore`].

use std::time::Duration;

use entity::integration::Model;
use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, FactoryRef, Job, Worker, WorkerId, queues,
    routing::KeyPersistentRouting, worker_builder,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, rpc::CallResult};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::CatalogError;
use crate::store::{IntegrationChanges, MonitoringChanges, NewIntegration, Store};
use crate::tenant::TenantId;

/// Longest a caller waits for a write to finish.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Reply<T> = RpcReplyPort<Result<T, CatalogError>>;

/// A change to one tenant's catalog. `actor` is the subject recorded in the audit trail.
#[derive(Debug)]
pub enum CatalogMsg {
    Create {
        actor: String,
        new: NewIntegration,
        reply: Reply<Model>,
    },
    Update {
        actor: String,
        id: Uuid,
        changes: IntegrationChanges,
        reply: Reply<Model>,
    },
    Delete {
        actor: String,
        id: Uuid,
        expected_version: Option<i64>,
        reply: Reply<Model>,
    },
    SetMonitoring {
        actor: String,
        id: Uuid,
        changes: MonitoringChanges,
        reply: Reply<Model>,
    },
}

/// A committed change, for whoever follows the catalog (the health engine).
#[derive(Debug, Clone)]
pub enum CatalogEvent {
    /// Created, updated, or monitoring changed: the integration as it now is.
    Upserted(Box<Model>),
    Deleted {
        id: Uuid,
    },
}

/// Where committed changes are announced.
pub type CatalogEvents = tokio::sync::mpsc::UnboundedSender<CatalogEvent>;

/// The state of a catalog worker.
pub struct WorkerState {
    store: Store,
    events: Option<CatalogEvents>,
}

impl WorkerState {
    fn announce(&self, result: &Result<Model, CatalogError>, deleted: bool) {
        if let (Some(events), Ok(model)) = (&self.events, result) {
            let event = if deleted {
                CatalogEvent::Deleted { id: model.id }
            } else {
                CatalogEvent::Upserted(Box::new(model.clone()))
            };
            // A closed receiver means nobody follows the catalog any more.
            let _ = events.send(event);
        }
    }
}

// === impl CatalogWorker ===

/// One worker of the catalog factory.
struct CatalogWorker;

impl Worker for CatalogWorker {
    type Key = TenantId;
    type Message = CatalogMsg;
    type Arguments = (Store, Option<CatalogEvents>);
    type State = WorkerState;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<TenantId, CatalogMsg>>,
        (store, events): (Store, Option<CatalogEvents>),
    ) -> Result<WorkerState, ActorProcessingErr> {
        Ok(WorkerState { store, events })
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<TenantId, CatalogMsg>>,
        Job { key, msg, .. }: Job<TenantId, CatalogMsg>,
        state: &mut WorkerState,
    ) -> Result<TenantId, ActorProcessingErr> {
        let tenant = state.store.tenant(key.clone());
        let span = tracing::info_span!("catalog", tenant_id = %key);
        let action = match &msg {
            CatalogMsg::Create { .. } => "create",
            CatalogMsg::Update { .. } => "update",
            CatalogMsg::Delete { .. } => "delete",
            CatalogMsg::SetMonitoring { .. } => "monitoring",
        };
        let (result, reply, deleted) = async move {
            match msg {
                CatalogMsg::Create { actor, new, reply } => {
                    (tenant.integration_create(&actor, new).await, reply, false)
                }
                CatalogMsg::Update {
                    actor,
                    id,
                    changes,
                    reply,
                } => (
                    tenant.integration_update(&actor, id, changes).await,
                    reply,
                    false,
                ),
                CatalogMsg::Delete {
                    actor,
                    id,
                    expected_version,
                    reply,
                } => (
                    tenant
                        .integration_delete(&actor, id, expected_version)
                        .await,
                    reply,
                    true,
                ),
                CatalogMsg::SetMonitoring {
                    actor,
                    id,
                    changes,
                    reply,
                } => (
                    tenant.integration_set_monitoring(&actor, id, changes).await,
                    reply,
                    false,
                ),
            }
        }
        .instrument(span)
        .await;
        if result.is_ok() {
            crud_committed(action);
        }
        state.announce(&result, deleted);
        // A reply port whose caller gave up is not an error of the worker.
        let _ = reply.send(result);
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
    /// Starts the catalog factory with `workers` workers.
    ///
    /// # Errors
    /// When the actor cannot be spawned.
    pub async fn start(
        store: Store,
        workers: usize,
        events: Option<CatalogEvents>,
    ) -> Result<(Self, JoinHandle<()>), ractor::SpawnErr> {
        let factory = Factory::<
            TenantId,
            CatalogMsg,
            (Store, Option<CatalogEvents>),
            CatalogWorker,
            KeyPersistentRouting<TenantId, CatalogMsg>,
            queues::DefaultQueue<TenantId, CatalogMsg>,
        >::default();
        let args = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_wid| {
                (CatalogWorker, (store.clone(), events.clone()))
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

    async fn call<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        build: impl FnOnce(Reply<T>) -> CatalogMsg,
    ) -> Result<T, CatalogError> {
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
        let actor = actor.to_owned();
        self.call(tenant, |reply| CatalogMsg::Create { actor, new, reply })
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
        let actor = actor.to_owned();
        self.call(tenant, |reply| CatalogMsg::Update {
            actor,
            id,
            changes,
            reply,
        })
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
        let actor = actor.to_owned();
        self.call(tenant, |reply| CatalogMsg::SetMonitoring {
            actor,
            id,
            changes,
            reply,
        })
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
        let actor = actor.to_owned();
        self.call(tenant, |reply| CatalogMsg::Delete {
            actor,
            id,
            expected_version,
            reply,
        })
        .await
    }
}

/// `integration_crud_total{action}`: catalog changes committed (`create`, `update`,
/// `delete`, `monitoring`). The name is the platform's; its dashboards expect it.
fn crud_committed(action: &'static str) {
    static CRUD: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    CRUD.get_or_init(|| {
        // Counters get the `_total` suffix in Prometheus text.
        opentelemetry::global::meter("stella-integrations")
            .u64_counter("integration_crud")
            .with_description("Catalog changes committed, by action.")
            .build()
    })
    .add(1, &[opentelemetry::KeyValue::new("action", action)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditQuery, IntegrationQuery, testing};
    use serde_json::json;

    fn new(name: &str, t: &str) -> NewIntegration {
        NewIntegration {
            provider_type: t.into(),
            name: name.into(),
            config: json!({"behaviour": "healthy"})
                .as_object()
                .cloned()
                .unwrap(),
            auth_ref_uri: None,
        }
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[tokio::test]
    async fn crud_round_trip_with_audit() {
        let store = testing::store().await;
        let (catalog, _h) = Catalog::start(store.clone(), 2, None).await.unwrap();
        let a = tenant("acme");
        let created = catalog
            .create(&a, "alice", new("one", "inmemory"))
            .await
            .unwrap();
        assert_eq!((created.version, created.status.as_str()), (1, "unknown"));

        let read = store
            .tenant(a.clone())
            .integration_get(created.id)
            .await
            .unwrap();
        assert_eq!(read, created);

        let changes = IntegrationChanges {
            name: "renamed".into(),
            config: Default::default(),
            auth_ref_uri: Some("authref://env/X".into()),
            expected_version: Some(1),
        };
        let updated = catalog
            .update(&a, "bob", created.id, changes.clone())
            .await
            .unwrap();
        assert_eq!((updated.version, updated.name.as_str()), (2, "renamed"));

        // The same expected version again is now stale.
        let stale = catalog.update(&a, "bob", created.id, changes).await;
        assert!(matches!(
            stale,
            Err(CatalogError::VersionMismatch {
                expected: 1,
                current: 2
            })
        ));

        catalog.delete(&a, "carol", created.id, None).await.unwrap();
        let gone = store.tenant(a.clone()).integration_get(created.id).await;
        assert!(matches!(gone, Err(CatalogError::NotFound { .. })));

        let trail = store
            .tenant(a)
            .audit_list(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<_> = trail
            .items
            .iter()
            .map(|e| (e.actor.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("carol", "integration.delete"),
                ("bob", "integration.update"),
                ("alice", "integration.create")
            ]
        );
        assert_eq!(trail.items[1].details["before"]["name"], "one");
        assert_eq!(trail.items[1].details["after"]["name"], "renamed");
        catalog.stop();
    }

    #[tokio::test]
    async fn names_are_unique_per_tenant_among_live_rows() {
        let store = testing::store().await;
        let (catalog, _h) = Catalog::start(store.clone(), 2, None).await.unwrap();
        let (a, b) = (tenant("a"), tenant("b"));
        let first = catalog
            .create(&a, "x", new("dup", "inmemory"))
            .await
            .unwrap();
        let clash = catalog.create(&a, "x", new("dup", "inmemory")).await;
        assert!(matches!(
            clash,
            Err(CatalogError::Conflict { field: "name", .. })
        ));
        // Another tenant may use the name, and so may the same tenant after a delete.
        catalog
            .create(&b, "x", new("dup", "inmemory"))
            .await
            .unwrap();
        catalog.delete(&a, "x", first.id, Some(1)).await.unwrap();
        catalog
            .create(&a, "x", new("dup", "inmemory"))
            .await
            .unwrap();
        catalog.stop();
    }

    #[tokio::test]
    async fn tenants_never_see_each_other() {
        let store = testing::store().await;
        let (catalog, _h) = Catalog::start(store.clone(), 2, None).await.unwrap();
        let (a, b) = (tenant("a"), tenant("b"));
        let mine = catalog
            .create(&a, "x", new("mine", "inmemory"))
            .await
            .unwrap();
        let other = store.tenant(b.clone());
        assert!(matches!(
            other.integration_get(mine.id).await,
            Err(CatalogError::NotFound { .. })
        ));
        let listed = other
            .integration_list(&IntegrationQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.items.is_empty());
        let changes = IntegrationChanges {
            name: "stolen".into(),
            config: Default::default(),
            auth_ref_uri: None,
            expected_version: None,
        };
        assert!(matches!(
            catalog.update(&b, "y", mine.id, changes).await,
            Err(CatalogError::NotFound { .. })
        ));
        assert!(matches!(
            catalog.delete(&b, "y", mine.id, None).await,
            Err(CatalogError::NotFound { .. })
        ));
        let trail = other
            .audit_list(&AuditQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(trail.items.is_empty());
        catalog.stop();
    }

    #[tokio::test]
    async fn pages_are_stable_and_filtered_by_type() {
        let store = testing::store().await;
        let (catalog, _h) = Catalog::start(store.clone(), 2, None).await.unwrap();
        let a = tenant("a");
        for i in 0..7 {
            let t = if i % 2 == 0 { "inmemory" } else { "gitlab" };
            catalog
                .create(&a, "x", new(&format!("n{i}"), t))
                .await
                .unwrap();
        }
        let reader = store.tenant(a);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = reader
                .integration_list(&IntegrationQuery {
                    after,
                    limit: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|m| m.name.clone()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
        let gitlab = reader
            .integration_list(&IntegrationQuery {
                provider_type: Some("gitlab".into()),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(gitlab.items.len(), 3);
        let unknown = reader
            .integration_list(&IntegrationQuery {
                status: Some("unknown".into()),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(unknown.items.len(), 7);
        let unhealthy = reader
            .integration_list(&IntegrationQuery {
                status: Some("unhealthy".into()),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(unhealthy.items.is_empty());
        assert!(gitlab.next.is_none());
        catalog.stop();
    }
}
