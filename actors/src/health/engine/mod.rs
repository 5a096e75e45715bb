//! The health engine: starts the result writer and the supervisors, spawns a monitor for every
//! live integration, follows the catalog's changes, and starts the history's upkeep (summaries
//! and retention, [`super::history`]).

use std::sync::Arc;
use std::time::Duration;

use connectors::{ConnectorEnv, IntegrationSpec};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::history::HistoryPolicy;
use super::monitor::{CheckResult, EngineContext, MonitorMsg, MonitorSpec, MonitorStatus};
use super::policy::Status;
use super::settings::{HealthSettings, InvalidSettings};
use super::supervisor::{MonitorSupervisor, SupervisorMsg};
use super::timers::Timers;
use super::writer::{ResultWriter, WriterOptions};

mod follow;
use crate::catalog::Change;
use crate::cluster::ClusterView;
use crate::events::Alerting;
use crate::registry::SharedRegistry;
use crate::store::Store;
use follow::load_maintenance_windows;

/// Rows per page of the start-up scan.
const LOAD_PAGE: u64 = 2000;
/// How long an on-demand check waits for a monitor that is about to start.
const MONITOR_GRACE: Duration = Duration::from_secs(1);

/// What a connector is built from: a catalog row's provider-facing parts.
pub fn integration_spec(m: &entity::integration::Model) -> IntegrationSpec {
    IntegrationSpec {
        id: m.id.to_string(),
        tenant: m.tenant_id.clone(),
        provider_type: m.provider_type.clone(),
        config: m.config_json.as_object().cloned().unwrap_or_default(),
        auth_ref: m.auth_ref_uri.as_deref().and_then(|u| u.parse().ok()),
    }
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Settings(#[from] InvalidSettings),
    #[error("starting a supervisor")]
    Spawn(#[from] ractor::SpawnErr),
    /// The integration has no running monitor (it is deleted, or waits out an error backoff).
    #[error("no monitor is running for this integration")]
    NoMonitor,
    /// The monitor did not answer in time.
    #[error("the monitor did not answer in time")]
    Timeout,
}

/// A handle to the running health engine.
#[derive(Clone)]
pub struct HealthEngine {
    inner: Arc<Inner>,
}

struct Inner {
    supervisors: Vec<ActorRef<SupervisorMsg>>,
    ctx: Arc<EngineContext>,
    registry: SharedRegistry,
    env: ConnectorEnv,
    store: Store,
    default_interval: Duration,
    /// In a cluster: which integrations this replica owns.
    cluster: Option<ClusterView>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    writer_task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl HealthEngine {
    /// Starts the engine: writer, supervisors, the start-up scan, the catalog follower and the
    /// maintenance jobs.
    ///
    /// # Errors
    /// Invalid settings, or a supervisor that cannot be spawned.
    pub async fn start(
        store: Store,
        settings: &HealthSettings,
        registry: SharedRegistry,
        env: ConnectorEnv,
        changes: UnboundedReceiver<Change>,
        alerting: Alerting,
        cluster: Option<ClusterView>,
    ) -> Result<Self, EngineError> {
        let schedule = settings.schedule()?;
        let clock = alerting.clock;
        let egress = alerting.egress.clone();
        let (writer, writer_task) = ResultWriter::spawn(
            store.clone(),
            WriterOptions {
                batch: settings.writer_batch,
                flush: Duration::from_millis(settings.writer_flush_ms),
                buffer: settings.writer_buffer,
                alerts: alerting.settings,
                hub: alerting.hub,
                clock: alerting.clock,
                cluster: cluster.clone(),
                ..WriterOptions::default()
            },
        );
        load_maintenance_windows(&store, &writer).await;
        let default_interval = schedule.interval;
        let ctx = Arc::new(EngineContext {
            schedule,
            writer,
            clock,
            timers: Timers::spawn(),
            egress,
        });
        let mut supervisors = Vec::new();
        for _ in 0..settings.supervisors.max(1) {
            let (supervisor, _) = Actor::spawn(None, MonitorSupervisor, ctx.clone()).await?;
            supervisors.push(supervisor);
        }
        let engine = Self {
            inner: Arc::new(Inner {
                supervisors,
                ctx,
                registry,
                env,
                store: store.clone(),
                default_interval,
                cluster: cluster.clone(),
                tasks: Default::default(),
                writer_task: std::sync::Mutex::new(Some(writer_task)),
            }),
        };
        let follower = tokio::spawn(engine.clone().follow(store.clone(), changes));
        // Summaries and retention are the cluster's, run by its leader only.
        let policy = HistoryPolicy::from_settings(settings);
        let history = tokio::spawn(crate::cluster::while_leader(
            cluster.as_ref().map(|c| c.ownership.clone()),
            move || {
                let tasks = AbortOnDrop(super::history::spawn(store.clone(), policy.clone()));
                async move {
                    let _running = tasks;
                    std::future::pending::<()>().await;
                }
            },
        ));
        let mut tasks = vec![follower, history];
        if let Some(cluster) = cluster {
            tasks.push(tokio::spawn(engine.clone().follow_ownership(cluster)));
        }
        engine
            .inner
            .tasks
            .lock()
            .expect("not poisoned")
            .extend(tasks);
        Ok(engine)
    }

    fn shard(&self, id: Uuid) -> &ActorRef<SupervisorMsg> {
        let n = self.inner.supervisors.len();
        &self.inner.supervisors[(id.as_u128() % n as u128) as usize]
    }

    /// The monitor spec of a catalog row, with its connector built.
    pub fn spec(&self, m: &entity::integration::Model) -> Arc<MonitorSpec> {
        let factory = self
            .inner
            .registry
            .read()
            .expect("registry lock")
            .get(&m.provider_type)
            .cloned();
        let connector = match factory {
            None => Err(Arc::from(format!(
                "no connector is registered for type {}",
                m.provider_type
            ))),
            Some(factory) => factory
                .build(&integration_spec(m), &self.inner.env)
                .map_err(|e| Arc::from(e.to_string())),
        };
        let interval = m
            .check_interval_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(self.inner.default_interval, Duration::from_secs);
        Arc::new(
            MonitorSpec::new(
                m.id,
                Arc::from(m.tenant_id.as_str()),
                Arc::from(m.provider_type.as_str()),
                m.version,
                interval,
                m.monitoring_paused,
                connector,
                Status::parse(&m.status),
            )
            .with_last_check(m.last_checked_at),
        )
    }

    /// Spawns (or reconfigures) the monitor of a catalog row; in a cluster, only when this
    /// replica owns the integration's shard.
    pub fn upsert(&self, m: &entity::integration::Model) {
        if let Some(cluster) = &self.inner.cluster
            && !cluster.owns(m.id)
        {
            return;
        }
        let _ = self
            .shard(m.id)
            .send_message(SupervisorMsg::Upsert(self.spec(m)));
    }

    /// Stops the monitor of a deleted integration.
    pub fn remove(&self, id: Uuid) {
        let _ = self.shard(id).send_message(SupervisorMsg::Remove(id));
    }

    async fn monitor(&self, id: Uuid) -> Result<ActorRef<MonitorMsg>, EngineError> {
        match self
            .shard(id)
            .call(
                |reply| SupervisorMsg::Lookup(id, reply),
                Some(Duration::from_secs(5)),
            )
            .await
        {
            Ok(CallResult::Success(Some(actor))) => Ok(actor),
            Ok(CallResult::Success(None)) => Err(EngineError::NoMonitor),
            _ => Err(EngineError::Timeout),
        }
    }

    /// The integration's monitor, waiting a moment for one that is about to start: the change
    /// feed reaches the engine just after the write commits, so a check asked for right after
    /// a create can arrive first.
    async fn monitor_soon(&self, id: Uuid) -> Result<ActorRef<MonitorMsg>, EngineError> {
        let deadline = tokio::time::Instant::now() + MONITOR_GRACE;
        loop {
            match self.monitor(id).await {
                Err(EngineError::NoMonitor) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                found => return found,
            }
        }
    }

    /// Runs a check now and waits for its result (at most the check timeout plus a margin).
    ///
    /// # Errors
    /// [`EngineError::NoMonitor`] or [`EngineError::Timeout`].
    pub async fn check_now(&self, id: Uuid) -> Result<CheckResult, EngineError> {
        let monitor = self.monitor_soon(id).await?;
        let wait = self.inner.ctx.schedule.timeout + Duration::from_secs(2);
        match monitor.call(MonitorMsg::CheckNow, Some(wait)).await {
            Ok(CallResult::Success(result)) => Ok(result),
            _ => Err(EngineError::Timeout),
        }
    }

    /// The live state of an integration's monitor.
    ///
    /// # Errors
    /// [`EngineError::NoMonitor`] or [`EngineError::Timeout`].
    pub async fn status(&self, id: Uuid) -> Result<MonitorStatus, EngineError> {
        let monitor = self.monitor(id).await?;
        match monitor
            .call(MonitorMsg::Status, Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(status)) => Ok(status),
            _ => Err(EngineError::Timeout),
        }
    }

    /// The check interval of integrations that do not set their own.
    /// Appends `event` to the outbox through the result writer, which keeps the outbox in
    /// commit order and retries until it lands.
    pub async fn record_event(&self, event: crate::events::NewEvent) {
        self.inner
            .ctx
            .writer
            .record(super::writer::WriteOp::Event(Box::new(event)))
            .await;
    }

    pub fn default_interval(&self) -> Duration {
        self.inner.default_interval
    }

    /// Stops every monitor and supervisor, then lets the writer flush what is queued.
    pub async fn stop(&self) {
        for task in self.inner.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
        for s in &self.inner.supervisors {
            // Stopping a supervisor stops its linked monitors.
            let _ = s.stop_and_wait(None, Some(Duration::from_secs(10))).await;
        }
        let writer = self.inner.writer_task.lock().expect("not poisoned").take();
        if let Some(writer) = writer {
            // Monitors are stopped; give the writer time to store what they queued.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while self.inner.ctx.writer.queued() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            writer.abort();
        }
    }
}

/// Tasks that end with their owner: the history's upkeep stops when leadership is lost.
struct AbortOnDrop<const N: usize>([JoinHandle<()>; N]);

impl<const N: usize> Drop for AbortOnDrop<N> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
