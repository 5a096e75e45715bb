//! What the replicas tell each other through PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! - `stella_changes`: every catalog change committed on one replica reaches the others' change
//!   feeds ([`ChangeFeed::publish_remote`]), so the replica that owns an integration rebuilds
//!   its monitor within a moment of a write made anywhere. A notification can be missed (a
//!   replica reconnecting): every [`RECONCILE_EVERY`] each replica also replays the catalog
//!   changes of the last minutes, which repairs that.
//! - `stella_outbox`: the outbox grew. Each replica's follower reads the outbox after the last
//!   sequence it saw, in order, and hands the events to its own hub, so an SSE stream on any
//!   replica sees every event of its tenant, and the leader's relays wake.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc::UnboundedReceiver, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::catalog::{Change, ChangeFeed};
use crate::events::hub::EventHub;
use crate::store::Store;
use crate::tenant::TenantId;

const CHANGES: &str = "stella_changes";
const OUTBOX: &str = "stella_outbox";
/// How often catalog changes are replayed from the database, and how far back.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
const RECONCILE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// Longest wait for the outbox when no notification comes.
const OUTBOX_POLL: Duration = Duration::from_secs(1);
const OUTBOX_PAGE: u64 = 1000;

/// A change as it travels between replicas: ids only, read back from the database.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    Integration {
        origin: String,
        id: Uuid,
    },
    WindowCreated {
        origin: String,
        window_id: Uuid,
    },
    WindowDeleted {
        origin: String,
        tenant: String,
        integration_id: Uuid,
        window_id: Uuid,
    },
    Subscription {
        origin: String,
        tenant: String,
        id: Uuid,
    },
    DeliveryRequeued {
        origin: String,
        tenant: String,
        subscription_id: Uuid,
    },
    PluginsDiscovered {
        origin: String,
    },
}

impl Notice {
    fn of(origin: &str, change: &Change) -> Option<Self> {
        let origin = origin.to_owned();
        Some(match change {
            Change::IntegrationUpserted(m) => Notice::Integration { origin, id: m.id },
            Change::IntegrationDeleted { id, .. } => Notice::Integration { origin, id: *id },
            Change::WindowCreated(w) => Notice::WindowCreated {
                origin,
                window_id: w.id,
            },
            Change::WindowDeleted {
                tenant,
                integration_id,
                window_id,
            } => Notice::WindowDeleted {
                origin,
                tenant: tenant.to_string(),
                integration_id: *integration_id,
                window_id: *window_id,
            },
            Change::SubscriptionChanged { tenant, id } => Notice::Subscription {
                origin,
                tenant: tenant.to_string(),
                id: *id,
            },
            Change::DeliveryRequeued {
                tenant,
                subscription_id,
            } => Notice::DeliveryRequeued {
                origin,
                tenant: tenant.to_string(),
                subscription_id: *subscription_id,
            },
            // Each replica discovers its own plugins: a discovery asked for here is announced,
            // and the others run theirs.
            Change::PluginsDiscovered { elsewhere: false } => Notice::PluginsDiscovered {
                origin: origin.to_owned(),
            },
            Change::ConnectorChanged { .. }
            | Change::WindowsReconciled { .. }
            | Change::PluginsDiscovered { elsewhere: true } => return None,
        })
    }

    fn origin(&self) -> &str {
        match self {
            Notice::Integration { origin, .. }
            | Notice::WindowCreated { origin, .. }
            | Notice::WindowDeleted { origin, .. }
            | Notice::Subscription { origin, .. }
            | Notice::DeliveryRequeued { origin, .. }
            | Notice::PluginsDiscovered { origin } => origin,
        }
    }
}

/// The bus's tasks; they end when `stop` turns `true`.
pub struct Bus {
    tasks: Vec<JoinHandle<()>>,
}

impl Bus {
    /// Starts telling the other replicas of this one's changes, listening to theirs, following
    /// the outbox into `hub` (woken by `local_commits` too), and reconciling.
    ///
    /// # Errors
    /// When the listening connection cannot be opened.
    pub async fn start(
        store: Store,
        replica: std::sync::Arc<str>,
        feed: &ChangeFeed,
        hub: EventHub,
        local_commits: watch::Receiver<i64>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, sea_orm::DbErr> {
        let pool = store.postgres_pool().clone();
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        listener
            .listen_all([CHANGES, OUTBOX])
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        let (wake_outbox, outbox_woken) = watch::channel(());
        let start = store.system().last_seq().await?;
        let tasks = vec![
            tokio::spawn(tell(
                store.clone(),
                replica.clone(),
                feed.outgoing(),
                stop.clone(),
            )),
            tokio::spawn(listen(
                store.clone(),
                replica,
                listener,
                feed.clone(),
                wake_outbox,
                stop.clone(),
            )),
            tokio::spawn(follow_outbox(
                store.clone(),
                hub,
                start,
                local_commits,
                outbox_woken,
                stop.clone(),
            )),
            tokio::spawn(reconcile(store, feed.clone(), stop)),
        ];
        Ok(Self { tasks })
    }

    /// Waits for the tasks to end (after `stop`).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Tells the other replicas of each change committed here.
async fn tell(
    store: Store,
    replica: std::sync::Arc<str>,
    mut changes: UnboundedReceiver<Change>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let change = tokio::select! {
            () = stopped(&mut stop) => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        let Some(notice) = Notice::of(&replica, &change) else {
            continue;
        };
        let Ok(payload) = serde_json::to_string(&notice) else {
            continue;
        };
        if let Err(error) = store.notify(CHANGES, &payload).await {
            // The others' reconciliation repairs a lost notification.
            tracing::warn!(message = "Telling the other replicas of a change failed.", %error);
        }
    }
}

/// Turns the other replicas' notifications into changes here.
async fn listen(
    store: Store,
    replica: std::sync::Arc<str>,
    mut listener: PgListener,
    feed: ChangeFeed,
    wake_outbox: watch::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            () = stopped(&mut stop) => return,
            received = listener.recv() => received,
        };
        let notification = match received {
            Ok(n) => n,
            Err(error) => {
                // PgListener reconnects on the next recv; what was missed is reconciled.
                tracing::warn!(message = "Listening to the other replicas failed; reconnecting.", %error);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if notification.channel() == OUTBOX {
            wake_outbox.send_replace(());
            continue;
        }
        let Ok(notice) = serde_json::from_str::<Notice>(notification.payload()) else {
            continue;
        };
        if notice.origin() == &*replica {
            continue;
        }
        if let Some(change) = change_of(&store, notice).await {
            feed.publish_remote(change);
        }
    }
}

/// The change a notice stands for, read back from the database.
async fn change_of(store: &Store, notice: Notice) -> Option<Change> {
    let tenant = |t: &str| TenantId::new(t).ok();
    match notice {
        Notice::Integration { id, .. } => integration_change(store, id).await,
        Notice::WindowCreated { window_id, .. } => {
            let window = store.system().maintenance_window(window_id).await.ok()??;
            Some(Change::WindowCreated(window))
        }
        Notice::WindowDeleted {
            tenant: t,
            integration_id,
            window_id,
            ..
        } => Some(Change::WindowDeleted {
            tenant: tenant(&t)?,
            integration_id,
            window_id,
        }),
        Notice::Subscription { tenant: t, id, .. } => Some(Change::SubscriptionChanged {
            tenant: tenant(&t)?,
            id,
        }),
        Notice::DeliveryRequeued {
            tenant: t,
            subscription_id,
            ..
        } => Some(Change::DeliveryRequeued {
            tenant: tenant(&t)?,
            subscription_id,
        }),
        Notice::PluginsDiscovered { .. } => Some(Change::PluginsDiscovered { elsewhere: true }),
    }
}

async fn integration_change(store: &Store, id: Uuid) -> Option<Change> {
    let row = match store.system().integration_any(id).await {
        Ok(row) => row?,
        Err(error) => {
            tracing::warn!(message = "Reading a changed integration failed.", %error);
            return None;
        }
    };
    Some(match row.deleted_at {
        Some(_) => Change::IntegrationDeleted {
            tenant: TenantId::new(&row.tenant_id).ok()?,
            id: row.id,
        },
        None => Change::IntegrationUpserted(std::sync::Arc::new(row)),
    })
}

/// Hands every event committed by any replica to this replica's hub, in sequence order.
async fn follow_outbox(
    store: Store,
    hub: EventHub,
    mut after: i64,
    mut local_commits: watch::Receiver<i64>,
    mut notified: watch::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let system = store.system();
    loop {
        loop {
            match system.events_after(after, OUTBOX_PAGE).await {
                Ok(events) => {
                    let full = events.len() as u64 == OUTBOX_PAGE;
                    if let Some(last) = events.last() {
                        after = last.seq;
                    }
                    hub.publish(events);
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Reading the outbox failed; retrying.", %error);
                    break;
                }
            }
        }
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = local_commits.changed() => {}
            _ = notified.changed() => {}
            () = tokio::time::sleep(OUTBOX_POLL) => {}
        }
    }
}

/// Replays the catalog changes of the last minutes, so a missed notification is repaired.
async fn reconcile(store: Store, feed: ChangeFeed, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        reconcile_once(&store, &feed).await;
    }
}

/// One reconciliation: the integrations changed in the last [`RECONCILE_WINDOW`] and every
/// maintenance window that can still become active, published to this replica's followers.
pub(crate) async fn reconcile_once(store: &Store, feed: &ChangeFeed) {
    let system = store.system();
    let read_at = tokio::time::Instant::now();
    match system.maintenance_windows(chrono::Utc::now()).await {
        Ok(windows) => feed.publish_remote(Change::WindowsReconciled {
            windows: std::sync::Arc::new(windows),
            read_at,
        }),
        Err(error) => {
            tracing::warn!(message = "Reconciling maintenance windows failed.", %error);
        }
    }
    let since = chrono::Utc::now() - RECONCILE_WINDOW;
    match system.integrations_changed_since(since, 10_000).await {
        Ok(rows) => {
            for row in rows {
                let change = match row.deleted_at {
                    Some(_) => match TenantId::new(&row.tenant_id) {
                        Ok(tenant) => Change::IntegrationDeleted { tenant, id: row.id },
                        Err(_) => continue,
                    },
                    None => Change::IntegrationUpserted(std::sync::Arc::new(row)),
                };
                feed.publish_remote(change);
            }
        }
        Err(error) => tracing::warn!(message = "Reconciling with the catalog failed.", %error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_travel_as_json_and_plugin_changes_stay_home() {
        let tenant = TenantId::new("t").unwrap();
        let change = Change::SubscriptionChanged {
            tenant: tenant.clone(),
            id: Uuid::nil(),
        };
        let notice = Notice::of("a", &change).unwrap();
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
        assert_eq!(notice.origin(), "a");
        let plugin = Change::ConnectorChanged {
            provider_type: "jenkins".into(),
        };
        assert!(Notice::of("a", &plugin).is_none());
    }

    #[tokio::test]
    async fn a_discovery_asked_here_is_told_and_runs_elsewhere_but_is_not_told_again() {
        let store = crate::store::testing::store().await;
        let asked_here = Change::PluginsDiscovered { elsewhere: false };
        let notice = Notice::of("a", &asked_here).expect("a discovery asked here is told");
        let json = serde_json::to_string(&notice).unwrap();
        let arrived: Notice = serde_json::from_str(&json).unwrap();
        assert!(matches!(
            change_of(&store, arrived).await,
            Some(Change::PluginsDiscovered { elsewhere: true })
        ));
        let told = Change::PluginsDiscovered { elsewhere: true };
        assert!(
            Notice::of("a", &told).is_none(),
            "a told discovery is told again"
        );
    }
}
