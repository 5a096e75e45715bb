//! `MonitorSupervisor`: owns a shard of the monitors, spawned linked, and restarts a crashed
//! one under a restart-intensity limit (at most `restart_limit` restarts in
//! `restart_window`, as OTP does). Past the limit the integration is marked `error` and its
//! monitor is tried again after `error_backoff`.
//!
//! ractor's default `handle_supervisor_evt` stops the supervisor when any child exits, which
//! is why this one overrides it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;
use uuid::Uuid;

use super::metrics;
use super::monitor::{EngineContext, IntegrationMonitor, MonitorMsg, MonitorSpec};
use super::policy::Status;
use super::writer::WriteOp;
use crate::events::alerts::Transition;

pub enum SupervisorMsg {
    /// Start the monitor, or reconfigure it if it runs with an older spec.
    Upsert(Arc<MonitorSpec>),
    /// The integration's connector changed under it (plugin discovery): adopt the spec even at
    /// the same version.
    Rebuild(Arc<MonitorSpec>),
    /// The integration was deleted: stop its monitor.
    Remove(Uuid),
    /// Keep only the monitors of integrations this replica still owns (a cluster's shards
    /// moved): stop the others.
    Retain(Arc<dyn Fn(Uuid) -> bool + Send + Sync>),
    /// Try again a monitor that was past its restart limit.
    Respawn(Uuid),
    /// The running monitor of an integration, if any.
    Lookup(Uuid, RpcReplyPort<Option<ActorRef<MonitorMsg>>>),
    /// The start-up scan is over: forget the deletions remembered during it.
    LoadFinished,
}

struct Child {
    spec: Arc<MonitorSpec>,
    /// `None` while the integration waits out its error backoff.
    actor: Option<ActorRef<MonitorMsg>>,
    /// Recent restarts, allocated only for monitors that ever crashed: one word for the rest.
    #[allow(clippy::box_collection)]
    restarts: Option<Box<VecDeque<Instant>>>,
}

pub struct MonitorSupervisor;

pub struct SupervisorState {
    ctx: Arc<EngineContext>,
    children: HashMap<Uuid, Child>,
    by_actor: HashMap<ActorId, Uuid>,
    /// Integrations deleted while the start-up scan runs, so a stale scan row cannot revive them.
    tombstones: Option<std::collections::HashSet<Uuid>>,
}

impl SupervisorState {
    /// Stops an integration's monitor and forgets it.
    fn stop(&mut self, id: Uuid) {
        if let Some(child) = self.children.remove(&id) {
            match child.actor {
                Some(actor) => {
                    self.by_actor.remove(&actor.get_id());
                    actor.stop(None);
                }
                // Waiting out its error backoff: only the status gauge counts it.
                None => metrics::status(
                    &child.spec.provider_type,
                    &child.spec.tenant,
                    child.spec.status().as_str(),
                    -1,
                ),
            }
        }
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: Arc<MonitorSpec>,
    ) -> Option<ActorRef<MonitorMsg>> {
        let id = spec.id;
        match Actor::spawn_linked(
            None,
            IntegrationMonitor,
            (spec, self.ctx.clone()),
            myself.get_cell(),
        )
        .await
        {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), id);
                Some(actor)
            }
            Err(error) => {
                tracing::error!(message = "A monitor failed to start.", integration_id = %id, %error);
                None
            }
        }
    }
}

// === impl MonitorSupervisor ===

impl Actor for MonitorSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<EngineContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        ctx: Arc<EngineContext>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            ctx,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            tombstones: Some(Default::default()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Upsert(spec) => {
                if state
                    .tombstones
                    .as_ref()
                    .is_some_and(|t| t.contains(&spec.id))
                {
                    return Ok(());
                }
                match state.children.get_mut(&spec.id) {
                    Some(child) if child.spec.version >= spec.version => {}
                    Some(child) => {
                        child.spec = spec.clone();
                        match &child.actor {
                            Some(actor) => {
                                let _ = actor.send_message(MonitorMsg::Reconfigure(spec));
                            }
                            None => {
                                // A new configuration deserves a fresh try at once.
                                child.restarts = None;
                                let actor = state.spawn(&myself, spec.clone()).await;
                                if let Some(child) = state.children.get_mut(&spec.id) {
                                    child.actor = actor;
                                }
                            }
                        }
                    }
                    None => {
                        let actor = state.spawn(&myself, spec.clone()).await;
                        state.children.insert(
                            spec.id,
                            Child {
                                spec,
                                actor,
                                restarts: None,
                            },
                        );
                    }
                }
            }
            SupervisorMsg::Rebuild(spec) => {
                if let Some(child) = state.children.get_mut(&spec.id) {
                    child.spec = spec.clone();
                    match &child.actor {
                        Some(actor) => {
                            let _ = actor.send_message(MonitorMsg::Reconfigure(spec));
                        }
                        None => {
                            let _ = myself.send_message(SupervisorMsg::Respawn(spec.id));
                        }
                    }
                }
            }
            SupervisorMsg::Remove(id) => {
                if let Some(tombstones) = &mut state.tombstones {
                    tombstones.insert(id);
                }
                state.stop(id);
            }
            SupervisorMsg::Retain(keep) => {
                let gone: Vec<Uuid> = state
                    .children
                    .keys()
                    .filter(|id| !keep(**id))
                    .copied()
                    .collect();
                for id in gone {
                    state.stop(id);
                }
            }
            SupervisorMsg::Respawn(id) => {
                let Some(spec) = state
                    .children
                    .get(&id)
                    .filter(|c| c.actor.is_none())
                    .map(|c| c.spec.clone())
                else {
                    return Ok(());
                };
                tracing::info!(message = "Retrying a monitor after its error backoff.", integration_id = %id);
                metrics::status(
                    &spec.provider_type,
                    &spec.tenant,
                    spec.status().as_str(),
                    -1,
                );
                let actor = state.spawn(&myself, spec).await;
                if let Some(child) = state.children.get_mut(&id) {
                    child.actor = actor;
                    child.restarts = None;
                }
            }
            SupervisorMsg::Lookup(id, reply) => {
                let _ = reply.send(state.children.get(&id).and_then(|c| c.actor.clone()));
            }
            SupervisorMsg::LoadFinished => state.tombstones = None,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(id) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let Some(child) = state.children.get_mut(&id) else {
                    return Ok(());
                };
                child.actor = None;
                // A failed actor skips `post_stop`: take it out of the gauges here.
                metrics::monitors(-1);
                metrics::status(
                    &child.spec.provider_type,
                    &child.spec.tenant,
                    child.spec.status().as_str(),
                    -1,
                );
                metrics::restart();
                let schedule = &state.ctx.schedule;
                let now = Instant::now();
                let restarts = child.restarts.get_or_insert_with(Default::default);
                restarts.push_back(now);
                while restarts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > schedule.restart_window)
                {
                    restarts.pop_front();
                }
                let count = restarts.len();
                let spec = child.spec.clone();
                if count as u32 > schedule.restart_limit {
                    tracing::warn!(
                        message = "A monitor keeps crashing; marking the integration as error.",
                        integration_id = %id,
                        restarts = count,
                        %error,
                    );
                    let from = spec.status();
                    spec.set_status(Status::Error);
                    metrics::status(&spec.provider_type, &spec.tenant, Status::Error.as_str(), 1);
                    let transition = Transition {
                        integration_id: id,
                        tenant: spec.tenant.clone(),
                        provider_type: spec.provider_type.clone(),
                        from,
                        to: Status::Error,
                        reason: Some(connectors::Reason::ConnectorFailed.as_str()),
                        message: Some(format!(
                            "the monitor crashed {count} times within {} s",
                            schedule.restart_window.as_secs()
                        )),
                        latency_ms: None,
                        checked_at: state.ctx.clock.now(),
                        crash_loop: Some(count as u32),
                    };
                    state
                        .ctx
                        .writer
                        .record(WriteOp::Status(Box::new(transition)))
                        .await;
                    myself.send_after(schedule.error_backoff, move || SupervisorMsg::Respawn(id));
                } else {
                    tracing::warn!(message = "Restarting a crashed monitor.", integration_id = %id, restarts = count, %error);
                    let actor = state.spawn(&myself, spec).await;
                    if let Some(child) = state.children.get_mut(&id) {
                        child.actor = actor;
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.by_actor.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
