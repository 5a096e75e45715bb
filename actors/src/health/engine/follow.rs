//! How the engine learns what to monitor: the start-up scan, the catalog's change feed (the
//! one way in for every change: integrations, maintenance windows, connectors), and, in a
//! cluster, the shards this replica gains and loses.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use super::{HealthEngine, LOAD_PAGE};
use crate::catalog::Change;
use crate::cluster::ClusterView;
use crate::events::alerts::MaintenanceChange;
use crate::health::supervisor::SupervisorMsg;
use crate::health::writer::{ResultWriter, WriteOp};
use crate::store::Store;

/// Hands every stored maintenance window that can still become active to the alert policy.
pub(super) async fn load_maintenance_windows(store: &Store, writer: &ResultWriter) {
    let windows = loop {
        match store.system().maintenance_windows(Utc::now()).await {
            Ok(windows) => break windows,
            Err(error) => {
                tracing::warn!(message = "Loading maintenance windows failed; retrying.", %error);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    for window in windows {
        writer
            .record(WriteOp::Maintenance(MaintenanceChange::Upsert(window)))
            .await;
    }
}

impl HealthEngine {
    /// Follows the shards this replica owns: stops the monitors of shards it lost, and starts
    /// those of shards it gained (one scan of the catalog per change).
    pub(super) async fn follow_ownership(self, mut cluster: ClusterView) {
        let mut owned: BTreeSet<u32> = cluster
            .ownership
            .borrow_and_update()
            .shards
            .keys()
            .copied()
            .collect();
        while cluster.ownership.changed().await.is_ok() {
            let now: BTreeSet<u32> = cluster
                .ownership
                .borrow_and_update()
                .shards
                .keys()
                .copied()
                .collect();
            if now == owned {
                continue;
            }
            if owned.difference(&now).next().is_some() {
                let view = cluster.clone();
                let keep: Arc<dyn Fn(Uuid) -> bool + Send + Sync> =
                    Arc::new(move |id| view.owns(id));
                for s in &self.inner.supervisors {
                    let _ = s.send_message(SupervisorMsg::Retain(keep.clone()));
                }
            }
            let gained: BTreeSet<u32> = now.difference(&owned).copied().collect();
            owned = now;
            if !gained.is_empty() {
                self.load_shards(&cluster, &gained).await;
            }
        }
    }

    /// Starts the monitors of the live integrations in `shards`.
    async fn load_shards(&self, cluster: &ClusterView, shards: &BTreeSet<u32>) {
        let system = self.inner.store.system();
        let mut after = None;
        loop {
            let page = match system.live_integrations(after, LOAD_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(message = "Loading the integrations of new shards failed; retrying.", %error);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            after = page.last().map(|m| m.id);
            let full = page.len() as u64 == LOAD_PAGE;
            let gained: Vec<_> = page
                .into_iter()
                .filter(|m| shards.contains(&crate::cluster::shard_of(m.id, cluster.shards)))
                .collect();
            // The row keeps the time of the last status change; the history has the last
            // check, so the integration keeps its phase under its new owner.
            let ids: Vec<Uuid> = gained.iter().map(|m| m.id).collect();
            let since = Utc::now()
                - chrono::Duration::from_std(self.inner.default_interval * 2)
                    .unwrap_or(chrono::Duration::hours(1));
            let last = system.last_checks(&ids, since).await.unwrap_or_default();
            for mut m in gained {
                if let Some(at) = last.get(&m.id) {
                    m.last_checked_at = m.last_checked_at.max(Some(*at));
                }
                self.upsert(&m);
            }
            if !full {
                return;
            }
        }
    }

    /// Rebuilds the monitors of every live integration of a provider type whose connector was
    /// added, replaced or removed (plugin discovery).
    async fn rebuild_type(&self, provider_type: &str) {
        let system = self.inner.store.system();
        let mut after = None;
        loop {
            let page = match system
                .live_integrations_of_type(provider_type, after, LOAD_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(message = "Rebuilding monitors failed.", provider_type, %error);
                    return;
                }
            };
            after = page.last().map(|m| m.id);
            for m in &page {
                let _ = self
                    .shard(m.id)
                    .send_message(SupervisorMsg::Rebuild(self.spec(m)));
            }
            if (page.len() as u64) < LOAD_PAGE {
                return;
            }
        }
    }

    /// Follows the catalog's change feed: the one way the engine learns of integrations,
    /// maintenance windows and connectors changing.
    pub(super) async fn follow(self, store: Store, mut changes: UnboundedReceiver<Change>) {
        // Catalog changes made while the scan runs are applied as they come; versions and
        // tombstones keep a stale scan row from undoing them.
        let scan = tokio::spawn(self.clone().load(store));
        while let Some(change) = changes.recv().await {
            match change {
                Change::IntegrationUpserted(m) => self.upsert(&m),
                Change::IntegrationDeleted { id, .. } => {
                    self.remove(id);
                    self.inner.ctx.writer.record(WriteOp::Forget(id)).await;
                }
                Change::WindowCreated(window) => {
                    self.maintenance(MaintenanceChange::Upsert(window)).await;
                }
                Change::WindowDeleted {
                    integration_id,
                    window_id,
                    ..
                } => {
                    let removed = MaintenanceChange::Remove {
                        integration_id,
                        window_id,
                    };
                    self.maintenance(removed).await;
                }
                Change::WindowsReconciled { windows, read_at } => {
                    let change = MaintenanceChange::Reconcile { windows, read_at };
                    self.maintenance(change).await;
                }
                Change::ConnectorChanged { provider_type } => {
                    self.rebuild_type(&provider_type).await;
                }
                Change::SubscriptionChanged { .. }
                | Change::DeliveryRequeued { .. }
                | Change::PluginsDiscovered { .. } => {}
            }
        }
        scan.abort();
    }

    async fn load(self, store: Store) {
        let system = store.system();
        let started = tokio::time::Instant::now();
        let mut after = None;
        let mut total = 0usize;
        loop {
            let page = match system.live_integrations(after, LOAD_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(message = "Loading integrations failed; retrying.", %error);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            total += page.len();
            after = page.last().map(|m| m.id);
            for m in &page {
                self.upsert(m);
            }
            if (page.len() as u64) < LOAD_PAGE {
                break;
            }
        }
        for s in &self.inner.supervisors {
            let _ = s.send_message(SupervisorMsg::LoadFinished);
        }
        tracing::info!(
            message = "Monitors scheduled for every live integration.",
            integrations = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
        );
    }

    /// Tells the alert policy of a maintenance window created or deleted.
    async fn maintenance(&self, change: MaintenanceChange) {
        self.inner
            .ctx
            .writer
            .record(WriteOp::Maintenance(change))
            .await;
    }
}
