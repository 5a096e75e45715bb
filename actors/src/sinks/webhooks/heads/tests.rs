//! The heads against the real queue (SQLite, or PostgreSQL with
//! `STELLA_TEST_DATABASE=postgres`): rows come from the relay's fan-out, results are recorded
//! as the worker records them.

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::json;

use super::*;
use crate::events::{EventKind, NewEvent};
use crate::store::webhooks::{Batching, SubscriptionFields};
use crate::store::{Store, testing};
use crate::tenant::TenantId;

const TENANT: &str = "ta";

async fn subscribe(store: &Store, batch: Option<Batching>) -> Uuid {
    store
        .tenant(TenantId::new(TENANT).unwrap())
        .subscription_create(
            "test",
            SubscriptionFields {
                name: "receiver".into(),
                target_url: "https://hooks.example.com/in".into(),
                event_types: vec![],
                integration_ids: vec![],
                secret_auth_ref_uri: "authref://env/HOOK_SECRET".into(),
                enabled: true,
                incident_members: Default::default(),
                batch,
            },
        )
        .await
        .unwrap()
        .id
}

/// One event per integration, in order, fanned out to the subscriptions; their outbox seqs.
async fn emit(store: &Store, integrations: &[Uuid]) -> Vec<i64> {
    let events: Vec<NewEvent> = integrations
        .iter()
        .map(|i| {
            NewEvent::new(
                EventKind::HealthChanged,
                TENANT.into(),
                Some(*i),
                Utc::now(),
                json!({"status": "unhealthy"}),
            )
        })
        .collect();
    let stored = store
        .system()
        .write_results(&[], &[], &events)
        .await
        .unwrap();
    store.webhooks().fan_out("webhooks", 10_000).await.unwrap();
    stored.iter().map(|e| e.seq).collect()
}

fn seqs(jobs: &[Job]) -> Vec<Vec<i64>> {
    jobs.iter()
        .map(|j| j.rows.iter().map(|r| r.event_seq).collect())
        .collect()
}

/// Records every delivery of the job as delivered, as the worker does.
async fn deliver(store: &Store, heads: &mut Heads, job: &Job) {
    let at = Utc::now();
    let outcomes: Vec<Outcome> = job
        .rows
        .iter()
        .map(|r| Outcome::Delivered {
            id: r.id,
            status_code: 204,
            at,
        })
        .collect();
    store.webhooks().record(&outcomes).await.unwrap();
    heads.finish(job, Some(&outcomes));
}

async fn fail(store: &Store, heads: &mut Heads, job: &Job, next_attempt_at: DateTime<Utc>) {
    let at = Utc::now();
    let outcomes: Vec<Outcome> = job
        .rows
        .iter()
        .map(|r| Outcome::Retry {
            id: r.id,
            status_code: Some(503),
            error: "the target answered HTTP 503".into(),
            at,
            next_attempt_at,
        })
        .collect();
    store.webhooks().record(&outcomes).await.unwrap();
    heads.finish(job, Some(&outcomes));
}

/// Refills, then takes what is due now (10 slots, 8 per subscription).
async fn next(store: &Store, heads: &mut Heads) -> Vec<Job> {
    heads.refill(&store.webhooks()).await.unwrap();
    heads.take(Utc::now(), 10, 8).0
}

#[tokio::test]
async fn new_rows_are_read_by_id_once_and_each_key_sends_in_order() {
    let store = testing::store().await;
    let sub = subscribe(&store, None).await;
    let (k1, k2, k3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut heads = Heads::new(Limits::default());
    assert!(next(&store, &mut heads).await.is_empty());
    assert_eq!(heads.rows_read(), 0);

    let s = emit(&store, &[k1, k1, k2]).await;
    let first = next(&store, &mut heads).await;
    assert_eq!(heads.rows_read(), 3, "the three new rows, once");
    assert_eq!(seqs(&first), [vec![s[0]], vec![s[2]]], "k1's second waits");
    assert!(first.iter().all(|j| j.target.id == sub));

    // Another refill reads only what is new.
    let t = emit(&store, &[k1, k3]).await;
    let second = next(&store, &mut heads).await;
    assert_eq!(heads.rows_read(), 5);
    assert_eq!(seqs(&second), [vec![t[1]]], "k1 is busy; k3 goes");
    heads.refill(&store.webhooks()).await.unwrap();
    assert_eq!(heads.rows_read(), 5, "nothing new, nothing read");

    // k1 goes on in order as each of its deliveries is recorded.
    deliver(&store, &mut heads, &first[0]).await;
    let third = next(&store, &mut heads).await;
    assert_eq!(seqs(&third), [vec![s[1]]]);
    deliver(&store, &mut heads, &third[0]).await;
    let fourth = next(&store, &mut heads).await;
    assert_eq!(seqs(&fourth), [vec![t[0]]]);
    for job in first[1..].iter().chain(&second).chain(&fourth) {
        deliver(&store, &mut heads, job).await;
    }
    assert!(next(&store, &mut heads).await.is_empty());
    assert_eq!(heads.backlog()[0].pending, 0);
}

#[tokio::test]
async fn a_retry_holds_its_key_until_its_time_while_other_keys_go_on() {
    let store = testing::store().await;
    subscribe(&store, None).await;
    let (k1, k2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut heads = Heads::new(Limits::default());
    let s = emit(&store, &[k1, k1, k2]).await;
    let jobs = next(&store, &mut heads).await;
    assert_eq!(seqs(&jobs), [vec![s[0]], vec![s[2]]]);
    let later = Utc::now() + ChronoDuration::hours(1);
    fail(&store, &mut heads, &jobs[0], later).await;
    deliver(&store, &mut heads, &jobs[1]).await;
    let t = emit(&store, &[k2]).await;

    heads.refill(&store.webhooks()).await.unwrap();
    let (now, due) = heads.take(Utc::now(), 10, 8);
    assert_eq!(
        seqs(&now),
        [vec![t[0]]],
        "k2 goes on; k1 waits for its retry"
    );
    assert_eq!(due, Some(later), "the retry's time is the next wake-up");
    let (retried, _) = heads.take(later, 10, 8);
    assert_eq!(
        seqs(&retried),
        [vec![s[0]]],
        "the failed head again, not the next"
    );
    assert_eq!(retried[0].rows[0].attempts, 1);
    let backlog = heads.backlog();
    assert_eq!(backlog[0].pending, 3);
    assert!(backlog[0].oldest.is_some());
}

#[tokio::test]
async fn keys_that_outgrow_memory_are_read_again_in_order() {
    let store = testing::store().await;
    subscribe(&store, None).await;
    let (k1, k2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut heads = Heads::new(Limits {
        per_key: 2,
        followers: 100,
        page: 3,
        pages: 1,
    });
    heads.refill(&store.webhooks()).await.unwrap();
    let mut order = vec![k1; 7];
    order.push(k2);
    let s = emit(&store, &order).await;
    // Three pages of three: k1 keeps two rows, the rest stays in the database.
    let mut sent: Vec<i64> = Vec::new();
    for _ in 0..50 {
        heads.refill(&store.webhooks()).await.unwrap();
        let (jobs, _) = heads.take(Utc::now(), 10, 8);
        if jobs.is_empty() && !heads.more() && !heads.wants_refill() {
            break;
        }
        for job in &jobs {
            sent.extend(job.rows.iter().map(|r| r.event_seq));
            deliver(&store, &mut heads, job).await;
        }
    }
    let k1_sent: Vec<i64> = sent.iter().copied().filter(|q| *q != s[7]).collect();
    assert_eq!(k1_sent, s[..7], "every row of k1, once, in order");
    assert!(sent.contains(&s[7]));
    assert_eq!(sent.len(), 8);
}

#[tokio::test]
async fn a_changed_subscription_is_read_again_and_a_requeued_delivery_goes_first() {
    let store = testing::store().await;
    let sub = subscribe(&store, None).await;
    let tenant = store.tenant(TenantId::new(TENANT).unwrap());
    let k1 = Uuid::now_v7();
    let mut heads = Heads::new(Limits::default());
    let s = emit(&store, &[k1, k1, k1]).await;
    let first = next(&store, &mut heads).await;
    let dead = Outcome::Dead {
        id: first[0].rows[0].id,
        status_code: Some(410),
        error: "gone".into(),
        at: Utc::now(),
    };
    store
        .webhooks()
        .record(std::slice::from_ref(&dead))
        .await
        .unwrap();
    heads.finish(&first[0], Some(&[dead]));
    let second = next(&store, &mut heads).await;
    assert_eq!(seqs(&second), [vec![s[1]]], "the dead one makes way");

    // Put back while the next is in flight: nothing of the subscription starts until its
    // attempt is recorded, then the requeued delivery goes first.
    tenant
        .delivery_retry("test", sub, first[0].rows[0].id)
        .await
        .unwrap()
        .unwrap();
    heads.invalidate(sub);
    assert!(next(&store, &mut heads).await.is_empty());
    deliver(&store, &mut heads, &second[0]).await;
    let third = next(&store, &mut heads).await;
    assert_eq!(seqs(&third), [vec![s[0]]], "the requeued delivery");
    deliver(&store, &mut heads, &third[0]).await;
    let fourth = next(&store, &mut heads).await;
    assert_eq!(seqs(&fourth), [vec![s[2]]]);
    deliver(&store, &mut heads, &fourth[0]).await;

    // Disabled: its pending deliveries wait in the database; enabled again, they go.
    let pending = emit(&store, &[k1]).await;
    let mut fields = SubscriptionFields {
        name: "receiver".into(),
        target_url: "https://hooks.example.com/in".into(),
        event_types: vec![],
        integration_ids: vec![],
        secret_auth_ref_uri: "authref://env/HOOK_SECRET".into(),
        enabled: false,
        incident_members: Default::default(),
        batch: None,
    };
    tenant
        .subscription_update("test", sub, fields.clone(), None)
        .await
        .unwrap();
    heads.invalidate(sub);
    assert!(next(&store, &mut heads).await.is_empty());
    assert!(
        heads.backlog().is_empty(),
        "no backlog reported while disabled"
    );
    fields.enabled = true;
    tenant
        .subscription_update("test", sub, fields, None)
        .await
        .unwrap();
    heads.invalidate(sub);
    let again = next(&store, &mut heads).await;
    assert_eq!(seqs(&again), [pending]);
}

#[tokio::test]
async fn a_batched_subscription_sends_up_to_its_size_or_after_its_delay_in_key_order() {
    let store = testing::store().await;
    let sub = subscribe(
        &store,
        Some(Batching {
            max_events: 3,
            max_delay_ms: 60_000,
        }),
    )
    .await;
    let (k1, k2, k3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut heads = Heads::new(Limits::default());
    let s = emit(&store, &[k1, k2]).await;
    heads.refill(&store.webhooks()).await.unwrap();
    let now = Utc::now();
    let (jobs, due) = heads.take(now, 10, 8);
    assert!(jobs.is_empty(), "two of three wait for the delay");
    let due = due.expect("a wake-up for the delay");
    assert!(due > now + ChronoDuration::seconds(59), "{due} vs {now}");
    let (jobs, _) = heads.take(due, 10, 8);
    assert_eq!(seqs(&jobs), [vec![s[0], s[1]]]);
    assert_eq!(jobs[0].target.id, sub);
    deliver(&store, &mut heads, &jobs[0]).await;

    // Full batches go at once; a key's rows stay together and in order.
    let t = emit(&store, &[k1, k1, k2, k3, k1]).await;
    heads.refill(&store.webhooks()).await.unwrap();
    let (jobs, _) = heads.take(Utc::now(), 10, 8);
    assert_eq!(seqs(&jobs), [vec![t[0], t[1], t[4]]], "k1's three");
    // A failed batch: every event of it is retried, none goes before its time.
    let later = Utc::now() + ChronoDuration::minutes(5);
    fail(&store, &mut heads, &jobs[0], later).await;
    let (rest, _) = heads.take(Utc::now() + ChronoDuration::minutes(2), 10, 8);
    assert_eq!(seqs(&rest), [vec![t[2], t[3]]], "k2 and k3 after the delay");
    let (retried, _) = heads.take(later, 10, 8);
    assert_eq!(seqs(&retried), [vec![t[0], t[1], t[4]]]);
    assert!(retried[0].rows.iter().all(|r| r.attempts == 1));
}

#[tokio::test]
async fn after_a_restart_a_batched_subscription_sends_what_it_holds_without_waiting() {
    let store = testing::store().await;
    subscribe(
        &store,
        Some(Batching {
            max_events: 10,
            max_delay_ms: 60_000,
        }),
    )
    .await;
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    // Queued before the worker starts: it reads each key's head only.
    let s = emit(&store, &[x, x, y, y]).await;
    let mut heads = Heads::new(Limits::default());
    let first = next(&store, &mut heads).await;
    assert_eq!(
        seqs(&first),
        [vec![s[0], s[2]]],
        "the heads go at once: waiting would add nothing to them"
    );
    deliver(&store, &mut heads, &first[0]).await;
    // Their next rows are read; now every row is in memory and the batch waits to fill.
    let now = Utc::now();
    assert!(next(&store, &mut heads).await.is_empty());
    let (rest, _) = heads.take(now + ChronoDuration::seconds(61), 10, 8);
    assert_eq!(seqs(&rest), [vec![s[1], s[3]]]);
}

/// Sets a delivery's status straight in the database, as another process's late commit or an
/// operator's edit would; exactly one row must change.
async fn set_status(store: &Store, id: i64, status: &str) {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = match store.backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "UPDATE webhook_deliveries SET status = $1 WHERE id = $2"
        }
        _ => "UPDATE webhook_deliveries SET status = ? WHERE id = ?",
    };
    let txn = crate::store::begin_all_tenants(&store.db, true)
        .await
        .unwrap();
    let done = txn
        .execute_raw(Statement::from_sql_and_values(
            store.backend(),
            sql,
            [status.into(), id.into()],
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(done.rows_affected(), 1, "delivery {id}");
}

#[tokio::test]
async fn a_row_that_turns_pending_below_the_scan_is_found_by_the_resync_only() {
    let store = testing::store().await;
    let sub = subscribe(&store, None).await;
    let (k1, k2, k3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut heads = Heads::new(Limits::default());
    assert!(next(&store, &mut heads).await.is_empty());

    // k1's row exists but is not pending yet when the scan passes it and k2's newer row.
    let s = emit(&store, &[k1, k2]).await;
    let late = store
        .webhooks()
        .pending_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event_seq == s[0])
        .unwrap();
    set_status(&store, late.id, "delivered").await;
    let first = next(&store, &mut heads).await;
    assert_eq!(seqs(&first), [vec![s[1]]]);
    assert!(heads.scanned() > late.id);
    deliver(&store, &mut heads, &first[0]).await;

    // Now it is pending, below what the scan has seen: refills by id never read it.
    set_status(&store, late.id, "pending").await;
    let t = emit(&store, &[k3]).await;
    let second = next(&store, &mut heads).await;
    assert_eq!(seqs(&second), [vec![t[0]]], "only the new row");
    deliver(&store, &mut heads, &second[0]).await;
    for _ in 0..3 {
        assert!(next(&store, &mut heads).await.is_empty());
    }
    assert!(!heads.wants_refill());
    assert_eq!(heads.backlog()[0].pending, 0, "memory does not know it");

    // The full re-read finds it, and it is sent like any other.
    heads.resync();
    assert!(heads.wants_refill());
    let third = next(&store, &mut heads).await;
    assert_eq!(seqs(&third), [vec![s[0]]]);
    assert!(third.iter().all(|j| j.target.id == sub));
    assert_eq!(heads.backlog()[0].pending, 1);
    deliver(&store, &mut heads, &third[0]).await;
    assert!(next(&store, &mut heads).await.is_empty());
    assert_eq!(heads.backlog()[0].pending, 0);

    // A resync with nothing missed sends nothing twice.
    heads.resync();
    assert!(next(&store, &mut heads).await.is_empty());
}

#[tokio::test]
async fn a_resync_finds_a_subscription_whose_only_rows_are_below_the_scan() {
    let store = testing::store().await;
    let mut heads = Heads::new(Limits::default());
    assert!(next(&store, &mut heads).await.is_empty());
    // Two subscriptions the worker has not met, one row each; the one with the lower id
    // turns pending only after the scan has passed it, so the scan never meets its
    // subscription.
    subscribe(&store, None).await;
    subscribe(&store, None).await;
    let s = emit(&store, &[Uuid::now_v7()]).await;
    let rows = store.webhooks().pending_after(0, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    let (hidden, visible) = (&rows[0], &rows[1]);
    assert!(hidden.id < visible.id);
    let (unseen, seen) = (hidden.subscription_id, visible.subscription_id);
    set_status(&store, hidden.id, "dead").await;
    let first = next(&store, &mut heads).await;
    assert_eq!(seqs(&first), [vec![s[0]]]);
    assert_eq!(first[0].target.id, seen);
    deliver(&store, &mut heads, &first[0]).await;
    set_status(&store, hidden.id, "pending").await;
    assert!(next(&store, &mut heads).await.is_empty());
    assert!(heads.backlog().iter().all(|b| b.subscription_id != unseen));

    heads.resync();
    let found = next(&store, &mut heads).await;
    assert_eq!(seqs(&found), [vec![s[0]]]);
    assert_eq!(found[0].target.id, unseen);
}
