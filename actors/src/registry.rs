//! The plugin-registry actor: the built-in connectors, plus external plugins discovered in the
//! configured directories at start-up and on demand.
//!
//! One mailbox serialises discoveries. A discovery scans the directories (blocking I/O, off the
//! runtime), compares fingerprints with `plugin_metadata`, starts, replaces or retires
//! [`ExternalPlugin`]s in the shared [`Registry`], records the result, and announces the
//! provider types whose connectors changed on the catalog's change feed
//! ([`Change::ConnectorChanged`]) so their monitors are rebuilt. It is the one writer of
//! `plugin_metadata`, which belongs to no tenant. Catalog validation
//! reads the same registry, so a type exists exactly when a plugin provides it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use connectors::external::{Discovery, ExternalPlugin, PluginSettings, diff, discover};
use connectors::{ConnectorFactory, Registry};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument as _;

use crate::catalog::{Change, ChangeFeed};
use crate::store::Store;
use crate::store::plugins::PluginRow;

/// The connectors by provider type, shared by the API, the catalog and the health engine.
pub type SharedRegistry = Arc<RwLock<Registry>>;

/// A plugin folder that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedPlugin {
    pub dir: String,
    pub id: Option<String>,
    pub provider_type: Option<String>,
    /// Stable: `bad_manifest`, `duplicate_type`, `duplicate_id`, `incompatible_protocol`,
    /// `missing_executable`, `not_executable`.
    pub code: String,
    pub message: String,
}

/// What a discovery changed, by plugin id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    pub rejected: Vec<RejectedPlugin>,
    /// Configured directories that could not be read.
    pub dir_errors: Vec<String>,
}

/// Why a discovery failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("reading or writing plugin metadata")]
    Db(#[from] sea_orm::DbErr),
    #[error("the plugin scan failed")]
    Scan,
    #[error("the plugin registry is unavailable")]
    Unavailable,
}

pub enum RegistryMsg {
    /// A discovery asked for here (the API): announced to the other replicas once it is done.
    /// The span is the caller's, which the discovery's span continues.
    Discover(tracing::Span, RpcReplyPort<Result<DiscoveryReport, String>>),
    /// A discovery because another replica ran one.
    Rediscover,
}

pub struct PluginRegistryActor;

pub struct RegistryArgs {
    pub store: Store,
    pub registry: SharedRegistry,
    pub dirs: Vec<PathBuf>,
    pub settings: PluginSettings,
    /// Where the provider types whose connector was added, replaced or removed are announced.
    pub changes: ChangeFeed,
}

pub struct RegistryState {
    args: RegistryArgs,
    builtin_types: Vec<&'static str>,
    /// Running external plugins by id: their type and handle.
    loaded: HashMap<String, (String, Arc<ExternalPlugin>)>,
}

impl RegistryState {
    /// A discovery in a span of its own (`plugin_discovery`, a child of `parent`), which
    /// carries what it found.
    async fn discover_traced(
        &mut self,
        parent: &tracing::Span,
        trigger: &'static str,
    ) -> Result<DiscoveryReport, RegistryError> {
        let span = tracing::info_span!(
            parent: parent,
            "plugin_discovery",
            trigger,
            dirs = self.args.dirs.len(),
            added = tracing::field::Empty,
            updated = tracing::field::Empty,
            removed = tracing::field::Empty,
            rejected = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self.discover().instrument(span.clone()).await;
        match &result {
            Ok(report) => {
                span.record("added", report.added.len());
                span.record("updated", report.updated.len());
                span.record("removed", report.removed.len());
                span.record("rejected", report.rejected.len());
            }
            Err(error) => {
                span.record("error", tracing::field::display(error));
            }
        }
        result
    }

    async fn discover(&mut self) -> Result<DiscoveryReport, RegistryError> {
        let dirs = self.args.dirs.clone();
        let builtins: Vec<String> = self.builtin_types.iter().map(|s| (*s).to_owned()).collect();
        let found: Discovery = tokio::task::spawn_blocking(move || {
            let builtins: Vec<&str> = builtins.iter().map(String::as_str).collect();
            discover(&dirs, &builtins)
        })
        .await
        .map_err(|_| RegistryError::Scan)?;
        let known: BTreeMap<String, String> = self
            .args
            .store
            .plugins()
            .await?
            .into_iter()
            .filter(|p| p.path.is_some())
            .map(|p| (p.plugin_id, p.fingerprint.unwrap_or_default()))
            .collect();
        let mut d = diff(&known, &found);
        // What this process runs but no longer finds is removed too, even when another replica
        // already deleted its row.
        let found_ids: std::collections::HashSet<&str> = found
            .plugins
            .iter()
            .map(|p| p.manifest.id.as_str())
            .collect();
        let mut gone_here: Vec<String> = self
            .loaded
            .keys()
            .filter(|id| !found_ids.contains(id.as_str()) && !d.removed.contains(id))
            .cloned()
            .collect();
        gone_here.sort();
        let deleted_rows = d.removed.clone();
        d.removed.extend(gone_here);
        let mut changed = Vec::new();
        let mut rows = Vec::new();
        for plugin in &found.plugins {
            let id = plugin.manifest.id.clone();
            let provider_type = plugin.manifest.provider_type.clone();
            let fresh = d.added.contains(&id) || d.updated.contains(&id);
            if fresh || !self.loaded.contains_key(&id) {
                let handle = Arc::new(ExternalPlugin::new(
                    plugin.clone(),
                    self.args.settings.clone(),
                ));
                self.args
                    .registry
                    .write()
                    .expect("registry lock")
                    .insert(handle.clone() as Arc<dyn ConnectorFactory>);
                if let Some((_, old)) = self
                    .loaded
                    .insert(id.clone(), (provider_type.clone(), handle))
                {
                    old.retire().await;
                }
                changed.push(provider_type.clone());
            }
            rows.push(PluginRow {
                plugin_id: id,
                provider_type,
                version: plugin.manifest.version.clone(),
                capabilities: plugin
                    .manifest
                    .capabilities
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
                path: Some(plugin.dir.display().to_string()),
                fingerprint: Some(plugin.fingerprint.clone()),
            });
        }
        for id in &d.removed {
            if let Some((provider_type, old)) = self.loaded.remove(id) {
                self.args
                    .registry
                    .write()
                    .expect("registry lock")
                    .remove(&provider_type);
                old.retire().await;
                changed.push(provider_type);
            }
        }
        self.args.store.plugins_upsert(&rows).await?;
        self.args.store.plugins_delete(&deleted_rows).await?;
        for provider_type in changed {
            self.args
                .changes
                .publish(Change::ConnectorChanged { provider_type });
        }
        let report = DiscoveryReport {
            added: d.added,
            updated: d.updated,
            removed: d.removed,
            unchanged: d.unchanged,
            rejected: found
                .rejected
                .iter()
                .map(|r| RejectedPlugin {
                    dir: r.dir.display().to_string(),
                    id: r.id.clone(),
                    provider_type: r.provider_type.clone(),
                    code: r.reason.code().to_owned(),
                    message: r.reason.to_string(),
                })
                .collect(),
            dir_errors: found
                .dir_errors
                .iter()
                .map(|(d, e)| format!("{}: {e}", d.display()))
                .collect(),
        };
        tracing::info!(
            message = "Plugin discovery finished.",
            added = report.added.len(),
            updated = report.updated.len(),
            removed = report.removed.len(),
            rejected = report.rejected.len(),
        );
        Ok(report)
    }
}

// === impl PluginRegistryActor ===

impl Actor for PluginRegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RegistryMsg>,
        args: RegistryArgs,
    ) -> Result<RegistryState, ActorProcessingErr> {
        let builtin_types = connectors::registry::builtin()
            .iter()
            .map(|f| f.provider_type())
            .collect::<Vec<_>>();
        let rows: Vec<PluginRow> = connectors::registry::builtin()
            .iter()
            .map(|f| PluginRow {
                plugin_id: format!("builtin.{}", f.provider_type()),
                provider_type: f.provider_type().to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                capabilities: f
                    .capabilities()
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
                path: None,
                fingerprint: None,
            })
            .collect();
        args.store.plugins_upsert(&rows).await?;
        let mut state = RegistryState {
            args,
            builtin_types,
            loaded: HashMap::new(),
        };
        if let Err(error) = state
            .discover_traced(&tracing::Span::current(), "start")
            .await
        {
            tracing::warn!(message = "Plugin discovery at start-up failed.", %error);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RegistryMsg>,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, (_, plugin)) in state.loaded.drain() {
            plugin.retire().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Discover(caller, reply) => {
                let result = state
                    .discover_traced(&caller, "request")
                    .await
                    .map_err(|e| e.to_string());
                if result.is_ok() {
                    state
                        .args
                        .changes
                        .publish(Change::PluginsDiscovered { elsewhere: false });
                }
                let _ = reply.send(result);
            }
            RegistryMsg::Rediscover => {
                let caller = tracing::Span::current();
                if let Err(error) = state.discover_traced(&caller, "replica").await {
                    tracing::warn!(message = "Plugin discovery after another replica's failed.", %error);
                }
            }
        }
        Ok(())
    }
}

/// A handle to the running plugin registry.
#[derive(Clone)]
pub struct PluginRegistry {
    actor: ActorRef<RegistryMsg>,
    pub shared: SharedRegistry,
}

impl PluginRegistry {
    /// Registers the built-ins, runs a first discovery, and starts the actor.
    ///
    /// # Errors
    /// When the actor cannot be spawned (the built-ins could not be recorded).
    pub async fn start(
        args: RegistryArgs,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        let shared = args.registry.clone();
        let mut changes = args.changes.follow();
        let (actor, handle) = Actor::spawn(None, PluginRegistryActor, args).await?;
        // In a cluster, a discovery on another replica is run here too: each replica has its
        // own plugin directories and processes.
        let follower = actor.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                if matches!(change, Change::PluginsDiscovered { elsewhere: true })
                    && follower.cast(RegistryMsg::Rediscover).is_err()
                {
                    return;
                }
            }
        });
        Ok((Self { actor, shared }, handle))
    }

    /// Scans the plugin directories now.
    ///
    /// # Errors
    /// [`RegistryError`] when the scan or the metadata update fails.
    pub async fn discover(&self) -> Result<DiscoveryReport, RegistryError> {
        match self
            .actor
            .call(
                |reply| RegistryMsg::Discover(tracing::Span::current(), reply),
                Some(std::time::Duration::from_secs(60)),
            )
            .await
        {
            Ok(CallResult::Success(Ok(report))) => Ok(report),
            Ok(CallResult::Success(Err(_))) => Err(RegistryError::Scan),
            _ => Err(RegistryError::Unavailable),
        }
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
