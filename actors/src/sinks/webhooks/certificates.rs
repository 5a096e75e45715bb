//! The TLS certificate each subscription's target presents, read on the delivery's own
//! connection (no extra request), kept on the subscription (`targetCertificateExpiresAt`) and
//! announced once per certificate when it comes within the warning horizon of
//! `[connectors.outbound] certificate_warning_days`, the horizon of the providers' own
//! certificates (`dev.stellaops.integration.subscription.certificate_expiring`).
//!
//! Deliveries see the same certificate thousands of times: memory remembers, per
//! subscription and target, the expiry and the side of the horizon last written, and the
//! database is written only when either changes (a renewed certificate, the horizon crossed,
//! a new target, or the first delivery after a start). A certificate already expired fails
//! the handshake before any of this (`tls`, in the delivery's `lastError`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use connectors::outbound::PeerCertificate;
use uuid::Uuid;

use crate::events::hub::EventHub;
use crate::store::webhooks::{TargetCertificate, WebhookStore};

/// Entries remembered before memory is cleared (a cleared entry costs one more write).
const MAX_REMEMBERED: usize = 100_000;

/// What was last written for one (subscription, target URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    expires_at: DateTime<Utc>,
    expiring: bool,
}

/// Keeps the targets' certificates. Cheap to clone; clones share their memory.
#[derive(Clone)]
pub struct TargetCertificates {
    store: WebhookStore,
    hub: EventHub,
    horizon: chrono::Duration,
    written: Arc<Mutex<HashMap<(Uuid, String), Written>>>,
}

impl TargetCertificates {
    /// Keeps certificates through `store`, warning `horizon` before they expire (zero: never),
    /// and hands the warnings to `hub` once committed.
    pub fn new(store: WebhookStore, hub: EventHub, horizon: chrono::Duration) -> Self {
        Self {
            store,
            hub,
            horizon,
            written: Arc::default(),
        }
    }

    fn expiring(&self, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.horizon > chrono::Duration::zero()
            && expires_at > now
            && expires_at - now <= self.horizon
    }

    /// Takes in the certificate a delivery to `subscription`'s `target_url` was answered
    /// over, at `now`; writes it (and the warning, when it is due) if it differs from what was
    /// written last. A failed write is forgotten, so the next delivery tries again.
    pub async fn observe(
        &self,
        subscription: Uuid,
        target_url: &str,
        certificate: PeerCertificate,
        now: DateTime<Utc>,
    ) {
        let key = (subscription, target_url.to_owned());
        let state = Written {
            expires_at: certificate.not_after,
            expiring: self.expiring(certificate.not_after, now),
        };
        {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            if written.get(&key) == Some(&state) {
                return;
            }
            if written.len() >= MAX_REMEMBERED {
                written.clear();
            }
            // Claimed before the write, so concurrent deliveries of one subscription write once.
            written.insert(key.clone(), state);
        }
        let seen = TargetCertificate {
            expires_at: certificate.not_after,
            seen_at: now,
        };
        match self
            .store
            .record_target_certificate(subscription, target_url, seen, self.horizon)
            .await
        {
            Ok(events) => self.hub.publish(events),
            Err(error) => {
                tracing::warn!(
                    message = "Keeping a webhook target's certificate failed; the next delivery tries again.",
                    subscription_id = %subscription,
                    %error,
                );
                self.written
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
            }
        }
    }
}

impl std::fmt::Debug for TargetCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetCertificates")
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
