//! The relay and the worker together, against a mock consumer on loopback.

use std::time::Duration;

use chrono::Utc;
use connectors::settings::{OutboundSettings, SecretsSettings, Settings};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::signature::{self, verify};
use super::{WebhookSettings, Webhooks};
use crate::catalog::ChangeFeed;
use crate::events::hub::EventHub;
use crate::events::{EventKind, NewEvent};
use crate::store::webhooks::{Batching, Delivery, DeliveryQuery, SubscriptionFields};
use crate::store::{Store, testing};
use crate::tenant::TenantId;

const SECRET: &str = "whsec_unit-test-secret";
const TENANT: &str = "ta";

/// A store, an event hub and an environment with the tenant's webhook secret at
/// `authref://file/tenants/ta/hook`; also used by the certificate tests.
pub(super) struct Fixture {
    pub(super) store: Store,
    env: connectors::ConnectorEnv,
    pub(super) hub: EventHub,
    changes: ChangeFeed,
    _secrets: tempfile::TempDir,
}

async fn fixture(allow_loopback: bool) -> Fixture {
    fixture_trusting(allow_loopback, None).await
}

/// A fixture whose outbound TLS also trusts `ca_pem` when given.
pub(super) async fn fixture_trusting(allow_loopback: bool, ca_pem: Option<&str>) -> Fixture {
    connectors::outbound::ensure_crypto_provider();
    let secrets = tempfile::tempdir().unwrap();
    let folder = secrets.path().join("tenants").join(TENANT);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("hook"), SECRET).unwrap();
    let ca_certificates = ca_pem
        .map(|pem| {
            let path = secrets.path().join("receiver-ca.pem");
            std::fs::write(&path, pem).unwrap();
            vec![path]
        })
        .unwrap_or_default();
    let settings = Settings {
        outbound: OutboundSettings {
            ca_certificates,
            allow_private_networks: if allow_loopback {
                vec!["127.0.0.0/8".into()]
            } else {
                vec![]
            },
            ..OutboundSettings::default()
        },
        secrets: SecretsSettings {
            secrets_dir: Some(secrets.path().to_owned()),
            ..SecretsSettings::default()
        },
    };
    Fixture {
        store: testing::store().await,
        env: connectors::ConnectorEnv::new(&settings).unwrap(),
        hub: EventHub::default(),
        changes: ChangeFeed::default(),
        _secrets: secrets,
    }
}

pub(super) fn fast() -> WebhookSettings {
    WebhookSettings {
        backoff_min_ms: 20,
        backoff_max_ms: 100,
        poll_interval_ms: 50,
        request_timeout_ms: 2_000,
        ..WebhookSettings::default()
    }
}

impl Fixture {
    pub(super) fn sinks(&self) -> crate::sinks::Context {
        crate::sinks::Context {
            store: self.store.clone(),
            env: self.env.clone(),
            hub: self.hub.clone(),
            changes: self.changes.clone(),
        }
    }

    async fn subscribe(&self, name: &str, url: String) -> Uuid {
        self.subscribe_with(name, url, None).await
    }

    async fn subscribe_with(&self, name: &str, url: String, batch: Option<Batching>) -> Uuid {
        self.store
            .tenant(TenantId::new(TENANT).unwrap())
            .subscription_create(
                "test",
                SubscriptionFields {
                    name: name.into(),
                    target_url: url,
                    event_types: vec![],
                    integration_ids: vec![],
                    secret_auth_ref_uri: "authref://file/tenants/ta/hook".into(),
                    enabled: true,
                    incident_members: Default::default(),
                    batch,
                },
            )
            .await
            .unwrap()
            .id
    }

    /// Appends one event per integration, in order, and tells the hub.
    pub(super) async fn emit(&self, integrations: &[Uuid]) -> Vec<Uuid> {
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
        let stored = self
            .store
            .system()
            .write_results(&[], &[], &events)
            .await
            .unwrap();
        let ids = stored.iter().map(|e| e.id).collect();
        self.hub.publish(stored);
        ids
    }

    pub(super) async fn deliveries(&self, subscription: Uuid) -> Vec<Delivery> {
        let mut page = self
            .store
            .tenant(TenantId::new(TENANT).unwrap())
            .delivery_list(
                subscription,
                &DeliveryQuery {
                    limit: 200,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items;
        page.reverse();
        page
    }

    /// Polls until `done` holds for the subscription's deliveries (oldest first), for at
    /// most `within`.
    pub(super) async fn until(
        &self,
        subscription: Uuid,
        within: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let rows = self.deliveries(subscription).await;
            if done(&rows) {
                return rows;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached: {rows:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn header_of<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn event_id_of(r: &Request) -> Uuid {
    header_of(r, signature::EVENT_ID_HEADER).parse().unwrap()
}

fn all(status: &'static str) -> impl Fn(&[Delivery]) -> bool {
    move |rows| !rows.is_empty() && rows.iter().all(|d| d.status == status)
}

#[tokio::test]
async fn deliveries_are_signed_held_in_order_and_retried_until_accepted() {
    let f = fixture(true).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .with_priority(2)
        .mount(&server)
        .await;
    let sub = f.subscribe("mock", format!("{}/hook", server.uri())).await;
    let x = Uuid::now_v7();
    let running = Webhooks::start(&f.sinks(), &fast()).unwrap().unwrap();
    let ids = f.emit(&[x, x, x]).await;
    let rows = f
        .until(sub, Duration::from_secs(15), all("delivered"))
        .await;
    running.stop().await;

    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].attempts, 4, "three 503s, then accepted");
    assert_eq!(rows[0].last_status_code, Some(202));
    assert!(rows[1..].iter().all(|d| d.attempts == 1));
    let requests = server.received_requests().await.unwrap();
    let order: Vec<Uuid> = requests.iter().map(event_id_of).collect();
    assert_eq!(
        order,
        [ids[0], ids[0], ids[0], ids[0], ids[1], ids[2]],
        "the failing first event held the later ones"
    );
    for r in &requests {
        assert_eq!(header_of(r, "content-type"), signature::CONTENT_TYPE);
        assert_eq!(
            header_of(r, signature::IDEMPOTENCY_KEY_HEADER),
            header_of(r, signature::EVENT_ID_HEADER)
        );
        let ts: i64 = header_of(r, signature::TIMESTAMP_HEADER).parse().unwrap();
        assert!((Utc::now().timestamp() - ts).abs() < 60);
        let sig = header_of(r, signature::SIGNATURE_HEADER);
        assert!(verify(SECRET.as_bytes(), ts, &r.body, sig), "bad signature");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["id"], event_id_of(r).to_string());
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["subject"], x.to_string());
    }
}

#[tokio::test]
async fn a_delivery_failing_past_the_dead_letter_time_is_dead_and_the_next_goes_ahead() {
    let f = fixture(true).await;
    let server = MockServer::start().await;
    let sub = f.subscribe("mock", server.uri()).await;
    let x = Uuid::now_v7();
    let ids = f.emit(&[x, x]).await;
    Mock::given(header(
        signature::EVENT_ID_HEADER,
        ids[0].to_string().as_str(),
    ))
    .respond_with(ResponseTemplate::new(500))
    .mount(&server)
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let settings = WebhookSettings {
        dead_letter_after_seconds: 1,
        ..fast()
    };
    let running = Webhooks::start(&f.sinks(), &settings).unwrap().unwrap();
    let rows = f
        .until(sub, Duration::from_secs(15), |rows| {
            rows.len() == 2 && rows[1].status == "delivered"
        })
        .await;
    running.stop().await;
    let (dead, next) = (&rows[0], &rows[1]);
    assert_eq!(dead.status, "dead");
    assert!(dead.attempts >= 2, "{dead:?}");
    assert_eq!(dead.last_status_code, Some(500));
    let gave_up = dead.last_attempt_at.unwrap() - dead.created_at;
    assert!(
        gave_up >= chrono::Duration::seconds(1) && gave_up < chrono::Duration::seconds(5),
        "dead-lettered after {gave_up}"
    );
    assert!(next.delivered_at.unwrap() >= dead.last_attempt_at.unwrap());
}

#[tokio::test]
async fn the_ssrf_guard_applies_at_delivery_time() {
    let f = fixture(false).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    // Stored directly (the API would refuse it): a target the guard does not allow.
    let sub = f.subscribe("inward", server.uri()).await;
    let running = Webhooks::start(&f.sinks(), &fast()).unwrap().unwrap();
    f.emit(&[Uuid::now_v7()]).await;
    let rows = f
        .until(sub, Duration::from_secs(10), |rows| {
            rows.first().is_some_and(|d| d.attempts >= 2)
        })
        .await;
    running.stop().await;
    assert_eq!(rows[0].status, "pending");
    let error = rows[0].last_error.as_deref().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_hanging_consumer_does_not_starve_other_subscriptions() {
    let f = fixture(true).await;
    let stuck = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&stuck)
        .await;
    let healthy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&healthy)
        .await;
    let slow = f.subscribe("stuck", stuck.uri()).await;
    let fine = f.subscribe("fine", healthy.uri()).await;
    let settings = WebhookSettings {
        concurrency: 4,
        per_subscription_concurrency: 2,
        request_timeout_ms: 20_000,
        ..fast()
    };
    let running = Webhooks::start(&f.sinks(), &settings).unwrap().unwrap();
    let integrations: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    f.emit(&integrations).await;
    f.emit(&integrations).await;
    // Both batches: the relay may fan the first out before the second is committed.
    let delivered = all("delivered");
    let done = f
        .until(fine, Duration::from_secs(10), |rows| {
            rows.len() == 16 && delivered(rows)
        })
        .await;
    assert_eq!(done.len(), 16);
    let stuck_rows = f.deliveries(slow).await;
    assert!(stuck_rows.iter().all(|d| d.status == "pending"));
    let in_flight = stuck.received_requests().await.unwrap().len();
    assert!(
        in_flight <= 2,
        "at most per_subscription_concurrency to the stuck consumer, got {in_flight}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_delivery_put_back_through_the_catalog_goes_out_without_waiting_for_the_poll() {
    let f = fixture(true).await;
    let server = MockServer::start().await;
    let sub = f.subscribe("mock", server.uri()).await;
    let failing = Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount_as_scoped(&server)
        .await;
    // The worker looks at the queue on its own only once a minute: only a wake-up can send
    // the requeued delivery within the test's bound.
    let settings = WebhookSettings {
        dead_letter_after_seconds: 1,
        poll_interval_ms: 60_000,
        ..fast()
    };
    let running = Webhooks::start(&f.sinks(), &settings).unwrap().unwrap();
    f.emit(&[Uuid::now_v7()]).await;
    let rows = f
        .until(sub, Duration::from_secs(15), |rows| {
            rows.len() == 1 && rows[0].status == "dead"
        })
        .await;
    drop(failing);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (catalog, _h) = crate::Catalog::start(f.store.clone(), 1, f.changes.clone())
        .await
        .unwrap();
    let tenant = TenantId::new(TENANT).unwrap();
    let requeued = catalog
        .delivery_retry(&tenant, "operator", sub, rows[0].id)
        .await
        .unwrap();
    assert!(requeued.is_some());
    let rows = f
        .until(sub, Duration::from_secs(10), |rows| {
            rows[0].status == "delivered"
        })
        .await;
    running.stop().await;
    catalog.stop();
    assert_eq!(rows[0].attempts, 1, "one attempt after the retry: {rows:?}");
}

#[tokio::test]
async fn a_failed_batch_is_retried_whole_signed_over_its_body_and_in_order() {
    let f = fixture(true).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&server)
        .await;
    let batch = Batching {
        max_events: 10,
        max_delay_ms: 0,
    };
    let sub = f
        .subscribe_with("batched", format!("{}/hook", server.uri()), Some(batch))
        .await;
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    let running = Webhooks::start(&f.sinks(), &fast()).unwrap().unwrap();
    let ids = f.emit(&[x, y, x]).await;
    let rows = f
        .until(sub, Duration::from_secs(15), all("delivered"))
        .await;
    running.stop().await;

    // The first batch was refused: each of its events went out again in a later batch (the
    // composition of later batches depends on what the worker held at the time) and was
    // accepted exactly once, x's two events in order.
    let requests = server.received_requests().await.unwrap();
    let mut batches: Vec<Vec<Uuid>> = Vec::new();
    for r in &requests {
        assert_eq!(header_of(r, "content-type"), signature::BATCH_CONTENT_TYPE);
        assert_eq!(header_of(r, signature::IDEMPOTENCY_KEY_HEADER), "");
        let ts: i64 = header_of(r, signature::TIMESTAMP_HEADER).parse().unwrap();
        let sig = header_of(r, signature::SIGNATURE_HEADER);
        assert!(verify(SECRET.as_bytes(), ts, &r.body, sig), "bad signature");
        let body: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            header_of(r, signature::BATCH_SIZE_HEADER),
            body.len().to_string()
        );
        batches.push(
            body.iter()
                .map(|e| e["id"].as_str().unwrap().parse().unwrap())
                .collect(),
        );
    }
    let refused = &batches[0];
    assert!(!refused.is_empty());
    let accepted: Vec<Uuid> = batches[1..].concat();
    let mut sorted = accepted.clone();
    sorted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each event accepted once: {batches:?}");
    let at = |id: &Uuid| accepted.iter().position(|a| a == id).unwrap();
    assert!(at(&ids[0]) < at(&ids[2]), "x out of order: {batches:?}");
    for batch in &batches {
        let xs: Vec<&Uuid> = batch.iter().filter(|i| **i != ids[1]).collect();
        assert!(xs.windows(2).all(|w| at(w[0]) < at(w[1])));
    }
    assert_eq!(rows.len(), 3);
    for d in &rows {
        let retried = refused.contains(&d.event_id);
        assert_eq!(d.attempts, if retried { 2 } else { 1 }, "{d:?}");
    }
}
