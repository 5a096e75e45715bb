use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder};

use super::*;
use crate::error::CatalogError;
use crate::events::{EventKind, NewEvent};
use crate::store::Store;
use crate::store::events::save_cursor;
use crate::store::testing;
use crate::tenant::TenantId;
use crate::{AuditQuery, TenantStore};

fn fields(name: &str, types: &[&str], integrations: &[Uuid], enabled: bool) -> SubscriptionFields {
    SubscriptionFields {
        name: name.into(),
        target_url: "https://hooks.example.com/in".into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        integration_ids: integrations.to_vec(),
        secret_auth_ref_uri: "authref://env/HOOK_SECRET".into(),
        enabled,
        incident_members: Default::default(),
        batch: None,
    }
}

fn tenant(store: &Store, name: &str) -> TenantStore {
    store.tenant(TenantId::new(name).unwrap())
}

fn event(kind: EventKind, tenant: &str, integration: Option<Uuid>) -> NewEvent {
    NewEvent::new(
        kind,
        Arc::from(tenant),
        integration,
        Utc::now(),
        json!({"status": "x"}),
    )
}

async fn deliveries(store: &Store) -> Vec<Delivery> {
    let txn = store.webhooks().begin_read().await.unwrap();
    let rows = webhook_delivery::Entity::find()
        .order_by_asc(webhook_delivery::Column::Id)
        .all(&txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    rows
}

#[tokio::test]
async fn subscriptions_are_audited_versioned_and_per_tenant() {
    let store = testing::store().await;
    let a = tenant(&store, "ta");
    let b = tenant(&store, "tb");
    let first = a
        .subscription_create("alice", fields("one", &[], &[], true))
        .await
        .unwrap();
    let second = a
        .subscription_create("alice", fields("two", &[], &[], true))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let page = a
        .subscription_list(&SubscriptionQuery {
            after: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(page.items[0].id, first.id);
    let next = a
        .subscription_list(&SubscriptionQuery {
            after: page.next,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(next.items[0].id, second.id);
    assert!(next.next.is_none());

    let stale = a
        .subscription_update("alice", first.id, fields("uno", &[], &[], false), Some(7))
        .await;
    assert!(matches!(
        stale,
        Err(CatalogError::VersionMismatch {
            expected: 7,
            current: 1
        })
    ));
    let updated = a
        .subscription_update("alice", first.id, fields("uno", &[], &[], false), Some(1))
        .await
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("uno", 2));
    assert!(!updated.enabled);

    // Another tenant finds nothing, by id or in a list.
    assert!(matches!(
        b.subscription_get(first.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(matches!(
        b.subscription_delete("bob", first.id, None).await,
        Err(CatalogError::NotFound { .. })
    ));
    let theirs = b
        .subscription_list(&SubscriptionQuery {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(theirs.items.is_empty());

    a.subscription_delete("alice", first.id, None)
        .await
        .unwrap();
    assert!(matches!(
        a.subscription_get(first.id).await,
        Err(CatalogError::NotFound { .. })
    ));
    let audit = a
        .audit_list(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "webhook_subscription.delete",
            "webhook_subscription.update",
            "webhook_subscription.create",
            "webhook_subscription.create",
        ]
    );
    assert_eq!(audit.items[1].details["before"]["name"], "one");
    assert_eq!(audit.items[1].details["after"]["name"], "uno");
}

#[tokio::test]
async fn fan_out_queues_matching_deliveries_once_and_moves_the_cursor_with_them() {
    let store = testing::store().await;
    let (a, b) = (tenant(&store, "ta"), tenant(&store, "tb"));
    let (x, y, z) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let all = a
        .subscription_create("u", fields("all", &[], &[], true))
        .await
        .unwrap();
    let recovered = a
        .subscription_create(
            "u",
            fields(
                "recovered",
                &["dev.stellaops.integration.health.recovered"],
                &[],
                true,
            ),
        )
        .await
        .unwrap();
    let only_x = a
        .subscription_create(
            "u",
            fields("x", &["dev.stellaops.integration.health.*"], &[x], true),
        )
        .await
        .unwrap();
    a.subscription_create("u", fields("off", &[], &[], false))
        .await
        .unwrap();
    let theirs = b
        .subscription_create("u", fields("b", &[], &[], true))
        .await
        .unwrap();
    let events = [
        event(EventKind::HealthChanged, "ta", Some(x)),
        event(EventKind::HealthRecovered, "ta", Some(y)),
        event(EventKind::HealthChanged, "tb", Some(z)),
        event(EventKind::HealthRecovered, "ta", Some(x)),
        event(EventKind::CredentialExpiring, "ta", None),
    ];
    let stored = store
        .system()
        .write_results(&[], &[], &events)
        .await
        .unwrap();
    let webhooks = store.webhooks();

    let first = webhooks.fan_out("webhooks", 2).await.unwrap();
    assert_eq!(
        first,
        FanOut {
            events: 2,
            deliveries: 4,
            cursor: stored[1].seq
        }
    );
    assert_eq!(
        store.system().cursor("webhooks").await.unwrap(),
        stored[1].seq,
        "the cursor moved with the deliveries"
    );
    let rest = webhooks.fan_out("webhooks", 100).await.unwrap();
    assert_eq!((rest.events, rest.deliveries), (3, 5));
    let idle = webhooks.fan_out("webhooks", 100).await.unwrap();
    assert_eq!(
        (idle.events, idle.deliveries, idle.cursor),
        (0, 0, rest.cursor)
    );

    let rows = deliveries(&store).await;
    let got: Vec<(i64, Uuid)> = rows
        .iter()
        .map(|d| (d.event_seq, d.subscription_id))
        .collect();
    let s = |i: usize| stored[i].seq;
    assert_eq!(
        got,
        [
            (s(0), all.id),
            (s(0), only_x.id),
            (s(1), all.id),
            (s(1), recovered.id),
            (s(2), theirs.id),
            (s(3), all.id),
            (s(3), recovered.id),
            (s(3), only_x.id),
            (s(4), all.id),
        ]
    );
    assert!(
        rows.iter()
            .all(|d| d.status == "pending" && d.attempts == 0)
    );
    assert_eq!(rows[4].tenant_id, "tb");
    assert_eq!(rows[8].ordering_key, Uuid::nil(), "no integration");
    assert_eq!(rows[0].ordering_key, x);
    assert_eq!(rows[0].event_id, stored[0].id);

    // A relay that lost its cursor (or a second relay) fans nothing out twice.
    let txn = webhooks.begin().await.unwrap();
    save_cursor(&txn, "webhooks", 0).await.unwrap();
    txn.commit().await.unwrap();
    let again = webhooks.fan_out("webhooks", 100).await.unwrap();
    assert_eq!(again.events, 5);
    assert_eq!(deliveries(&store).await.len(), 9);
}

async fn queue(
    store: &Store,
    subscription: Uuid,
    seq: i64,
    key: Uuid,
    status: DeliveryStatus,
    next_attempt_at: DateTime<Utc>,
) -> i64 {
    let txn = store.webhooks().begin().await.unwrap();
    let row = webhook_delivery::ActiveModel {
        id: NotSet,
        tenant_id: Set("ta".into()),
        subscription_id: Set(subscription),
        event_seq: Set(seq),
        event_id: Set(Uuid::now_v7()),
        event_type: Set("dev.stellaops.integration.health.changed".into()),
        ordering_key: Set(key),
        status: Set(status.as_str().into()),
        attempts: Set(0),
        next_attempt_at: Set(next_attempt_at),
        last_attempt_at: Set(None),
        last_status_code: Set(None),
        last_error: Set(None),
        created_at: Set(Utc::now()),
        requeued_at: Set(None),
        delivered_at: Set(None),
    }
    .insert(&txn)
    .await
    .unwrap();
    txn.commit().await.unwrap();
    row.id
}

#[tokio::test]
async fn the_worker_reads_new_rows_by_id_and_one_key_or_subscription_at_a_time() {
    use DeliveryStatus::{Dead, Delivered, Pending};
    let store = testing::store().await;
    let a = tenant(&store, "ta");
    let s1 = a
        .subscription_create("u", fields("1", &[], &[], true))
        .await
        .unwrap()
        .id;
    let s2 = a
        .subscription_create("u", fields("2", &[], &[], true))
        .await
        .unwrap()
        .id;
    let off = a
        .subscription_create("u", fields("3", &[], &[], false))
        .await
        .unwrap()
        .id;
    let gone = a
        .subscription_create("u", fields("4", &[], &[], true))
        .await
        .unwrap()
        .id;
    let webhooks = store.webhooks();
    assert_eq!(webhooks.last_delivery_id().await.unwrap(), 0);
    let (k1, k2) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    let past = now - ChronoDuration::seconds(5);
    let later = now + ChronoDuration::hours(1);
    let delivered = queue(&store, s1, 1, k1, Delivered, past).await;
    let s1_k1 = queue(&store, s1, 2, k1, Pending, past).await;
    let s1_k1_next = queue(&store, s1, 3, k1, Pending, past).await;
    let s1_k2 = queue(&store, s1, 4, k2, Pending, later).await;
    queue(&store, s2, 5, k1, Dead, past).await;
    let s2_k1 = queue(&store, s2, 6, k1, Pending, now).await;
    let off_k1 = queue(&store, off, 7, k1, Pending, past).await;
    let dropped = queue(&store, gone, 8, k1, Pending, past).await;
    a.subscription_delete("u", gone, None).await.unwrap();
    assert_eq!(webhooks.last_delivery_id().await.unwrap(), dropped);

    let ids = |rows: Vec<super::Pending>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    // New rows by id: pending ones only, in id order, from where the scan stopped.
    assert_eq!(
        ids(webhooks.pending_after(0, 100).await.unwrap()),
        [s1_k1, s1_k1_next, s1_k2, s2_k1, off_k1]
    );
    assert_eq!(
        ids(webhooks.pending_after(s1_k1_next, 2).await.unwrap()),
        [s1_k2, s2_k1]
    );
    // One key, up to an id.
    assert_eq!(
        ids(webhooks.pending_of_key(s1, k1, dropped, 10).await.unwrap()),
        [s1_k1, s1_k1_next]
    );
    assert_eq!(
        ids(webhooks.pending_of_key(s1, k1, s1_k1, 10).await.unwrap()),
        [s1_k1]
    );
    // One subscription's heads and its count.
    let q = webhooks.subscription_queue(s1, dropped).await.unwrap();
    assert_eq!(ids(q.heads.clone()), [s1_k1, s1_k2]);
    assert_eq!(q.pending, 3);
    let head = &q.heads[0];
    assert_eq!(
        (head.event_seq, head.ordering_key, head.attempts),
        (2, k1, 0)
    );
    assert_eq!(
        webhooks
            .subscription_queue(s1, s1_k1)
            .await
            .unwrap()
            .pending,
        1
    );
    // Where each subscription sends, and whether it is live.
    let mut targets = webhooks
        .targets(&[s1, off, gone, Uuid::now_v7()])
        .await
        .unwrap();
    targets.sort_by_key(|t| t.id);
    let active: Vec<(Uuid, bool)> = targets.iter().map(|t| (t.id, t.active)).collect();
    assert_eq!(active, [(s1, true), (off, false), (gone, false)]);
    assert_eq!(targets[0].target_url, "https://hooks.example.com/in");
    assert_eq!(targets[0].tenant_id, "ta");
    let mut live: Vec<Uuid> = webhooks
        .active_targets()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    live.sort();
    assert_eq!(live, [s1, s2]);
    let _ = delivered;

    // Results: the delivered head makes way for the next of its key; a failure stays head.
    let at = Utc::now();
    webhooks
        .record(&[
            Outcome::Delivered {
                id: s1_k1,
                status_code: 204,
                at,
            },
            Outcome::Retry {
                id: s2_k1,
                status_code: Some(503),
                error: "the target answered HTTP 503".into(),
                at,
                next_attempt_at: later,
            },
            Outcome::Retry {
                id: dropped,
                status_code: None,
                error: "late".into(),
                at,
                next_attempt_at: at,
            },
        ])
        .await
        .unwrap();
    let q = webhooks.subscription_queue(s1, dropped).await.unwrap();
    assert_eq!(ids(q.heads), [s1_k1_next, s1_k2], "the next of s1/k1");
    let rows = deliveries(&store).await;
    let row = |id: i64| rows.iter().find(|d| d.id == id).unwrap().clone();
    let delivered = row(s1_k1);
    assert_eq!(delivered.status, "delivered");
    assert_eq!(
        (delivered.attempts, delivered.last_status_code),
        (1, Some(204))
    );
    assert!(delivered.delivered_at.is_some());
    let retried = row(s2_k1);
    assert_eq!(retried.status, "pending");
    assert_eq!(retried.attempts, 1);
    assert_eq!(
        retried.last_error.as_deref(),
        Some("the target answered HTTP 503")
    );
    let dead = row(dropped);
    assert_eq!(
        (dead.status.as_str(), dead.attempts),
        ("dead", 0),
        "a deleted subscription's delivery is not brought back"
    );
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the subscription was deleted")
    );

    // A dead delivery can be requeued by hand, once, by its tenant.
    let b = tenant(&store, "tb");
    assert!(matches!(
        b.delivery_retry("v", s2, 5).await,
        Err(CatalogError::NotFound { .. })
    ));
    let dead_id = rows.iter().find(|d| d.event_seq == 5).unwrap().id;
    let requeued = a.delivery_retry("u", s2, dead_id).await.unwrap().unwrap();
    assert_eq!(
        (requeued.status.as_str(), requeued.attempts),
        ("pending", 0)
    );
    assert!(requeued.requeued_at.is_some());
    assert!(matches!(
        a.delivery_retry("u", s2, dead_id).await,
        Err(CatalogError::Conflict { .. })
    ));
    assert!(a.delivery_retry("u", s2, 999_999).await.unwrap().is_none());
    let page = a
        .delivery_list(
            s2,
            &DeliveryQuery {
                status: Some(Pending),
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let listed: Vec<i64> = page.items.iter().map(|d| d.id).collect();
    assert_eq!(listed, [s2_k1, dead_id], "newest first");
    // The requeued delivery is older, so it is its key's head again; its clock is fresh.
    let q = webhooks.subscription_queue(s2, dropped).await.unwrap();
    assert_eq!(ids(q.heads.clone()), [dead_id]);
    let clock = q.heads[0].queued_at - requeued.requeued_at.unwrap();
    assert!(clock.num_milliseconds().abs() < 1, "{clock}");
}
