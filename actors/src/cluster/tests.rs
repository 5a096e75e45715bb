//! Leases on a real PostgreSQL (a cluster never runs on SQLite, so these always use it).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{ClusterSettings, Membership, shard_of};
use crate::store::cluster::{Fence, shard_lease};
use crate::store::health::CheckRow;
use crate::store::{Store, testing};

fn settings(shards: u32) -> ClusterSettings {
    ClusterSettings {
        enabled: true,
        shards,
        lease_ttl_seconds: 3,
        renew_seconds: 1,
        ..ClusterSettings::default()
    }
}

fn owned(m: &Membership) -> BTreeSet<u32> {
    m.ownership().borrow().shards.keys().copied().collect()
}

/// Polls until `done` holds, for at most `seconds`.
async fn until(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicas_share_the_shards_evenly_and_a_leaver_hands_its_own_over_at_once() {
    let store = testing::postgres_store().await;
    let a = Membership::start(&store, &settings(8), "a".into())
        .await
        .unwrap();
    assert_eq!(owned(&a).len(), 8, "alone, a replica owns every shard");
    assert!(a.ownership().borrow().is_leader());
    assert!(a.renewing());

    let b = Membership::start(&store, &settings(8), "b".into())
        .await
        .unwrap();
    until(10, "an even share", || {
        owned(&a).len() == 4 && owned(&b).len() == 4
    })
    .await;
    assert!(owned(&a).is_disjoint(&owned(&b)));
    assert!(!b.ownership().borrow().is_leader(), "one leader");

    a.stop().await;
    until(5, "the leaver's shards and leadership taken over", || {
        owned(&b).len() == 8 && b.ownership().borrow().is_leader()
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_cluster_refuses_a_replica_with_another_number_of_shards() {
    let store = testing::postgres_store().await;
    let a = Membership::start(&store, &settings(8), "a".into())
        .await
        .unwrap();
    let other = Membership::start(&store, &settings(16), "b".into()).await;
    assert!(other.is_err(), "16 shards joined a cluster of 8");
    a.stop().await;
}

fn row(integration: Uuid) -> CheckRow {
    CheckRow {
        integration_id: integration,
        tenant_id: "t".into(),
        checked_at: Utc::now(),
        status: "healthy",
        reason: None,
        latency_ms: 1,
        error_message: None,
        folded: None,
    }
}

async fn results(store: &Store, integration: Uuid) -> usize {
    store
        .tenant(crate::TenantId::new("t").unwrap())
        .health_history(
            integration,
            &crate::store::health::HistoryQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .len()
}

/// A replica that lost its lease (it was paused past the lease, say) writes nothing more for
/// that shard, even when it took the lease back since (a new epoch).
#[tokio::test]
async fn writes_under_a_lost_or_older_lease_are_refused() {
    let store = testing::postgres_store().await;
    let cluster = store.cluster();
    cluster.ensure_leases(1).await.unwrap();
    let integration = Uuid::now_v7();
    assert_eq!(shard_of(integration, 1), 0);
    let held = cluster.claim_shards("a", 1.0, 1).await.unwrap();
    let epoch = held[0].epoch;
    let fence = Fence {
        replica: "a".into(),
        stamps: [(integration, (0, epoch))].into(),
    };
    let system = store.system();
    system
        .write_results_fenced(&[row(integration)], &[], &[], Some(&fence))
        .await
        .unwrap();
    assert_eq!(results(&store, integration).await, 1, "the holder writes");

    // The lease expires and another replica takes it: the old holder's write is refused.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let taken = cluster.claim_shards("b", 30.0, 1).await.unwrap();
    assert_eq!(taken[0].name, shard_lease(0));
    system
        .write_results_fenced(&[row(integration)], &[], &[], Some(&fence))
        .await
        .unwrap();
    assert_eq!(
        results(&store, integration).await,
        1,
        "a stale holder wrote"
    );

    // Handed back, the lease has a new epoch: results stamped with the old one stay out.
    cluster.release("b", &[shard_lease(0)]).await.unwrap();
    let again = cluster.claim_shards("a", 30.0, 1).await.unwrap();
    assert!(again[0].epoch > epoch);
    system
        .write_results_fenced(&[row(integration)], &[], &[], Some(&fence))
        .await
        .unwrap();
    assert_eq!(
        results(&store, integration).await,
        1,
        "an older epoch wrote"
    );
    let current = Fence {
        replica: "a".into(),
        stamps: [(integration, (0, again[0].epoch))].into(),
    };
    system
        .write_results_fenced(&[row(integration)], &[], &[], Some(&current))
        .await
        .unwrap();
    assert_eq!(results(&store, integration).await, 2);
}

#[tokio::test]
async fn leadership_moves_only_when_the_lease_is_free() {
    let store = testing::postgres_store().await;
    let cluster = store.cluster();
    cluster.ensure_leases(1).await.unwrap();
    assert!(cluster.claim_leader("a", 30.0).await.unwrap().is_some());
    assert!(cluster.claim_leader("b", 30.0).await.unwrap().is_none());
    cluster.leave("a").await.unwrap();
    assert!(cluster.claim_leader("b", 30.0).await.unwrap().is_some());
}

/// A window change whose notification never arrived (a replica reconnecting, say) is repaired
/// by the next reconciliation: it lists every window that can still become active.
#[tokio::test]
async fn a_reconciliation_carries_the_windows_as_the_database_has_them() {
    use crate::catalog::{Change, ChangeFeed};
    use crate::store::NewIntegration;
    use crate::store::maintenance::NewMaintenanceWindow;

    let store = testing::postgres_store().await;
    let tenant = store.tenant(crate::TenantId::new("t").unwrap());
    let integration = tenant
        .integration_create(
            "tester",
            NewIntegration {
                provider_type: "inmemory".into(),
                name: "one".into(),
                config: serde_json::Map::new(),
                auth_ref_uri: None,
            },
        )
        .await
        .unwrap();
    let window = |hours: i64| NewMaintenanceWindow {
        starts_at: Utc::now() + chrono::Duration::hours(hours),
        ends_at: Utc::now() + chrono::Duration::hours(hours + 1),
        recurrence: None,
        until: None,
        reason: None,
    };
    // Written straight to the database: no replica was told.
    let kept = tenant
        .maintenance_create("tester", integration.id, window(1))
        .await
        .unwrap();
    let deleted = tenant
        .maintenance_create("tester", integration.id, window(2))
        .await
        .unwrap();
    tenant
        .maintenance_delete("tester", integration.id, deleted.id)
        .await
        .unwrap();

    let feed = ChangeFeed::default();
    let mut followed = feed.follow();
    let before = tokio::time::Instant::now();
    super::bus::reconcile_once(&store, &feed).await;
    let mut windows = None;
    while let Ok(change) = followed.try_recv() {
        if let Change::WindowsReconciled {
            windows: w,
            read_at,
        } = change
        {
            assert!(read_at >= before);
            windows = Some(w);
        }
    }
    let windows = windows.expect("no reconciliation of the windows was published");
    let ids: Vec<Uuid> = windows.iter().map(|w| w.id).collect();
    assert_eq!(
        ids,
        vec![kept.id],
        "the deleted window was listed, or the kept one not"
    );
}
