//! Deliveries to a loopback HTTPS receiver whose certificate is made here, with the validity
//! each test needs: the certificate's expiry is kept on the subscription, announced once
//! within the horizon, and an expired one fails the delivery with a TLS error.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::events::StoredEvent;
use crate::sinks::webhooks::Webhooks;
use crate::sinks::webhooks::tests::{Fixture, fast, fixture_trusting};
use crate::store::webhooks::{Delivery, Subscription, SubscriptionFields};
use crate::tenant::TenantId;

const TENANT: &str = "ta";
const TYPE: &str = "dev.stellaops.integration.subscription.certificate_expiring";
/// Most connections a receiver accepts: every test here makes far fewer.
const MAX_CONNECTIONS: usize = 64;

/// An HTTPS receiver on loopback answering every POST 202, with a self-signed certificate
/// valid from `not_before` to `not_after` days from now; and the PEM of that certificate.
async fn receiver(not_before: i64, not_after: i64) -> (u16, String, tokio::task::JoinHandle<()>) {
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = now + time::Duration::days(not_before);
    params.not_after = now + time::Duration::days(not_after);
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        for _ in 0..MAX_CONNECTIONS {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // One request per connection: read the head and the body it announces.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if request.len() > 1 << 20 {
                        return;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length.min(1 << 20) {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, cert.pem(), server)
}

/// A fixture trusting `ca_pem` and loopback targets, warning 14 days before a certificate
/// expires (the default horizon).
async fn fixture(ca_pem: &str) -> Fixture {
    fixture_trusting(true, Some(ca_pem)).await
}

impl Fixture {
    fn start(&self) -> Webhooks {
        Webhooks::start(&self.sinks(), &fast()).unwrap().unwrap()
    }

    async fn subscribe_tls(&self, port: u16) -> Uuid {
        self.store
            .tenant(TenantId::new(TENANT).unwrap())
            .subscription_create(
                "test",
                SubscriptionFields {
                    name: "tls receiver".into(),
                    target_url: format!("https://127.0.0.1:{port}/hook"),
                    // Health events only: the warning itself is not delivered, so the counts
                    // below are the health events'.
                    event_types: vec!["dev.stellaops.integration.health.*".into()],
                    integration_ids: vec![],
                    secret_auth_ref_uri: "authref://file/tenants/ta/hook".into(),
                    enabled: true,
                    incident_members: Default::default(),
                    batch: None,
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn subscription(&self, id: Uuid) -> Subscription {
        self.store
            .tenant(TenantId::new(TENANT).unwrap())
            .subscription_get(id)
            .await
            .unwrap()
    }

    async fn warnings(&self) -> Vec<StoredEvent> {
        let all = self.store.system().events_after(0, 1000).await.unwrap();
        all.into_iter().filter(|e| e.event_type == TYPE).collect()
    }
}

/// How long a test waits for its deliveries.
const WITHIN: Duration = Duration::from_secs(15);

/// `n` health events of new integrations.
async fn emit(f: &Fixture, n: usize) {
    let integrations: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    f.emit(&integrations).await;
}

fn delivered(n: usize) -> impl Fn(&[Delivery]) -> bool {
    move |rows| rows.len() == n && rows.iter().all(|d| d.status == "delivered")
}

#[tokio::test]
async fn a_target_certificate_near_its_end_is_kept_and_announced_once() {
    let (port, pem, server) = receiver(-10, 3).await;
    let f = fixture(&pem).await;
    let sub = f.subscribe_tls(port).await;
    let mut live = f.hub.subscribe();
    let running = f.start();
    emit(&f, 3).await;
    f.until(sub, WITHIN, delivered(3)).await;
    running.stop().await;

    let kept = f
        .subscription(sub)
        .await
        .target_certificate_expires_at
        .expect("the target's notAfter, read on the delivery's connection");
    let left = kept - Utc::now();
    assert!(
        left > chrono::Duration::days(2) && left <= chrono::Duration::days(3),
        "{kept}"
    );
    let warnings = f.warnings().await;
    assert_eq!(warnings.len(), 1, "one warning for three deliveries");
    let data = &warnings[0].payload["data"];
    assert_eq!(data["subscriptionId"], json!(sub));
    assert_eq!(data["expiresAt"], json!(kept));
    assert_eq!(data["name"], "tls receiver");
    assert_eq!(warnings[0].payload["source"], "/tenants/ta");
    // SSE streams hear of it as soon as it is committed.
    let mut heard = false;
    while let Ok(event) = live.try_recv() {
        heard |= event.event_type == TYPE;
    }
    assert!(heard, "the warning was not handed to the hub");

    // A restarted worker (memory empty) delivers again over the same certificate: the
    // database remembers it was announced.
    let running = f.start();
    emit(&f, 2).await;
    f.until(sub, WITHIN, delivered(5)).await;
    running.stop().await;
    assert_eq!(
        f.warnings().await.len(),
        1,
        "announced again after a restart"
    );
    server.abort();
}

#[tokio::test]
async fn a_target_certificate_far_from_its_end_is_kept_without_a_warning() {
    let (port, pem, server) = receiver(-10, 20).await;
    let f = fixture(&pem).await;
    let sub = f.subscribe_tls(port).await;
    let running = f.start();
    emit(&f, 2).await;
    f.until(sub, WITHIN, delivered(2)).await;
    running.stop().await;
    let kept = f
        .subscription(sub)
        .await
        .target_certificate_expires_at
        .unwrap();
    let left = kept - Utc::now();
    assert!(left > chrono::Duration::days(19) && left <= chrono::Duration::days(20));
    assert!(f.warnings().await.is_empty());
    server.abort();
}

#[tokio::test]
async fn an_expired_target_certificate_fails_the_delivery_with_tls() {
    for (not_before, not_after, what) in [(-30, -1, "expired"), (1, 30, "not yet valid")] {
        let (port, pem, server) = receiver(not_before, not_after).await;
        let f = fixture(&pem).await;
        let sub = f.subscribe_tls(port).await;
        let running = f.start();
        emit(&f, 1).await;
        let rows = f
            .until(sub, WITHIN, |rows| {
                rows.len() == 1 && rows[0].attempts >= 1 && rows[0].last_error.is_some()
            })
            .await;
        running.stop().await;
        assert_eq!(rows[0].status, "pending", "{what}: retried, not delivered");
        let error = rows[0].last_error.as_deref().unwrap();
        assert!(error.starts_with("TLS: "), "{what}: {error}");
        assert!(
            error.to_ascii_lowercase().contains("certificate"),
            "{what}: {error}"
        );
        assert_eq!(
            f.subscription(sub).await.target_certificate_expires_at,
            None
        );
        assert!(f.warnings().await.is_empty(), "{what}");
        server.abort();
    }
}
