//! The TLS certificate of each subscription's target, as its deliveries saw it, and the one
//! warning per certificate that crosses the warning horizon.

use chrono::{DateTime, Utc};
use entity::webhook_subscription;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr,
    EntityTrait, QueryFilter, Statement,
};
use serde_json::json;
use uuid::Uuid;

use super::WebhookStore;
use crate::events::{EventKind, NewEvent, StoredEvent};

/// What a delivery connection told of its target's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetCertificate {
    /// The certificate's `notAfter`.
    pub expires_at: DateTime<Utc>,
    /// When the connection was made.
    pub seen_at: DateTime<Utc>,
}

// === impl WebhookStore ===

impl WebhookStore {
    /// Keeps `certificate` as the one the subscription's target presents, provided the
    /// subscription still targets `target_url`; when the certificate expires within `horizon`
    /// (a zero horizon never warns) and was not announced yet, appends one
    /// `subscription.certificate_expiring` event in the same transaction, marking the
    /// certificate announced. Returns the events appended.
    ///
    /// # Errors
    /// [`DbErr`]; nothing is kept then, and the next delivery tries again.
    pub async fn record_target_certificate(
        &self,
        subscription: Uuid,
        target_url: &str,
        certificate: TargetCertificate,
        horizon: chrono::Duration,
    ) -> Result<Vec<StoredEvent>, DbErr> {
        let txn = self.begin().await?;
        let Some(row) = webhook_subscription::Entity::find_by_id(subscription)
            .filter(webhook_subscription::Column::DeletedAt.is_null())
            .filter(webhook_subscription::Column::TargetUrl.eq(target_url))
            .one(&txn)
            .await?
        else {
            // Deleted, or given another target since the delivery started.
            txn.commit().await?;
            return Ok(Vec::new());
        };
        let TargetCertificate {
            expires_at,
            seen_at,
        } = certificate;
        let expiring = horizon > chrono::Duration::zero()
            && expires_at > seen_at
            && expires_at - seen_at <= horizon;
        let announce = expiring && row.target_certificate_warned_for != Some(expires_at);
        if row.target_certificate_expires_at == Some(expires_at) && !announce {
            txn.commit().await?;
            return Ok(Vec::new());
        }
        let mut event = None;
        if announce {
            event = Some(NewEvent::new(
                EventKind::SubscriptionCertificateExpiring,
                row.tenant_id.as_str().into(),
                None,
                seen_at,
                json!({
                    "tenant": row.tenant_id,
                    "subscriptionId": row.id,
                    "name": row.name,
                    "expiresAt": expires_at,
                    "expiresInSeconds": (expires_at - seen_at).num_seconds().max(0),
                }),
            ));
        }
        let mut update: webhook_subscription::ActiveModel = row.into();
        update.target_certificate_expires_at = Set(Some(expires_at));
        if announce {
            update.target_certificate_warned_for = Set(Some(expires_at));
        }
        update.update(&txn).await?;
        let stored = match event {
            Some(event) => append_event(&txn, event).await?,
            None => Vec::new(),
        };
        txn.commit().await?;
        Ok(stored)
    }
}

/// Appends one event under the outbox lock (PostgreSQL), so sequence order stays commit
/// order, and announces it to the other connections listening for the outbox.
async fn append_event<C: ConnectionTrait>(
    txn: &C,
    event: NewEvent,
) -> Result<Vec<StoredEvent>, DbErr> {
    let backend = txn.get_database_backend();
    let postgres = backend == DatabaseBackend::Postgres;
    if postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            crate::store::health::LOCK_OUTBOX,
            [crate::store::health::OUTBOX_LOCK.into()],
        ))
        .await?;
    }
    let stored = crate::store::events::append(txn, &[event]).await?;
    if postgres && let Some(last) = stored.last() {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            crate::store::health::NOTIFY_OUTBOX,
            [last.seq.to_string().into()],
        ))
        .await?;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::store::webhooks::SubscriptionFields;
    use crate::store::{Store, testing};
    use crate::tenant::TenantId;

    const TYPE: &str = "dev.stellaops.integration.subscription.certificate_expiring";
    const URL: &str = "https://hooks.example.com/stella";

    fn fields(url: &str) -> SubscriptionFields {
        SubscriptionFields {
            name: "hooks".into(),
            target_url: url.into(),
            event_types: vec![],
            integration_ids: vec![],
            secret_auth_ref_uri: "authref://file/tenants/ta/hook".into(),
            enabled: true,
            incident_members: Default::default(),
            batch: None,
        }
    }

    async fn subscription(store: &Store) -> Uuid {
        store
            .tenant(TenantId::new("ta").unwrap())
            .subscription_create("test", fields(URL))
            .await
            .unwrap()
            .id
    }

    async fn stored(store: &Store, id: Uuid) -> entity::webhook_subscription::Model {
        store
            .tenant(TenantId::new("ta").unwrap())
            .subscription_get(id)
            .await
            .unwrap()
    }

    async fn warnings(store: &Store) -> Vec<StoredEvent> {
        let all = store.system().events_after(0, 1000).await.unwrap();
        all.into_iter().filter(|e| e.event_type == TYPE).collect()
    }

    fn at(now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
        // Certificates carry whole seconds.
        DateTime::from_timestamp((now + Duration::days(days)).timestamp(), 0).unwrap()
    }

    #[tokio::test]
    async fn one_warning_per_certificate_at_the_horizon_and_not_before() {
        let store = testing::store().await;
        let hooks = store.webhooks();
        let id = subscription(&store).await;
        let horizon = Duration::days(14);
        let now = Utc::now();
        let expires_at = at(now, 15);
        let seen = |seen_at| TargetCertificate {
            expires_at,
            seen_at,
        };

        // 15 days left: kept, not announced
        let events = hooks
            .record_target_certificate(id, URL, seen(now), horizon)
            .await
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(
            stored(&store, id).await.target_certificate_expires_at,
            Some(expires_at)
        );

        // two days on, 13 days left: announced once, with its date
        let later = now + Duration::days(2);
        let events = hooks
            .record_target_certificate(id, URL, seen(later), horizon)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        let data = &events[0].payload["data"];
        assert_eq!(data["subscriptionId"], json!(id));
        assert_eq!(data["expiresAt"], json!(expires_at));
        assert_eq!(events[0].integration_id, None);
        assert_eq!(events[0].tenant_id, "ta");
        // and never again for that certificate
        for day in 3..6 {
            let events = hooks
                .record_target_certificate(id, URL, seen(now + Duration::days(day)), horizon)
                .await
                .unwrap();
            assert!(events.is_empty(), "day {day}");
        }
        assert_eq!(warnings(&store).await.len(), 1);

        // renewed for 90 days: kept, nothing to announce
        let renewed = at(later, 90);
        let events = hooks
            .record_target_certificate(
                id,
                URL,
                TargetCertificate {
                    expires_at: renewed,
                    seen_at: later,
                },
                horizon,
            )
            .await
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(
            stored(&store, id).await.target_certificate_expires_at,
            Some(renewed)
        );
        // that one in turn reaches the horizon: announced, once
        let end = renewed - Duration::days(3);
        for _ in 0..2 {
            hooks
                .record_target_certificate(
                    id,
                    URL,
                    TargetCertificate {
                        expires_at: renewed,
                        seen_at: end,
                    },
                    horizon,
                )
                .await
                .unwrap();
        }
        assert_eq!(warnings(&store).await.len(), 2);

        // a zero horizon keeps the date and never warns
        let other = subscription(&store).await;
        let events = hooks
            .record_target_certificate(id, URL, seen(later), Duration::zero())
            .await
            .unwrap();
        assert!(events.is_empty());
        let events = hooks
            .record_target_certificate(other, URL, seen(later), Duration::zero())
            .await
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(
            stored(&store, other).await.target_certificate_expires_at,
            Some(expires_at)
        );
    }

    #[tokio::test]
    async fn a_certificate_seen_on_a_former_target_is_not_kept() {
        let store = testing::store().await;
        let hooks = store.webhooks();
        let id = subscription(&store).await;
        let now = Utc::now();
        let seen = TargetCertificate {
            expires_at: at(now, 3),
            seen_at: now,
        };
        // a delivery to the old URL finishing after the subscription moved
        let tenant = store.tenant(TenantId::new("ta").unwrap());
        hooks
            .record_target_certificate(id, URL, seen, Duration::days(14))
            .await
            .unwrap();
        assert!(
            stored(&store, id)
                .await
                .target_certificate_expires_at
                .is_some()
        );
        tenant
            .subscription_update("test", id, fields("https://new.example.com/x"), None)
            .await
            .unwrap();
        let moved = stored(&store, id).await;
        assert_eq!(
            moved.target_certificate_expires_at, None,
            "forgotten on a move"
        );
        assert_eq!(moved.target_certificate_warned_for, None);
        let events = hooks
            .record_target_certificate(id, URL, seen, Duration::days(14))
            .await
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(stored(&store, id).await.target_certificate_expires_at, None);
        // another field changed, same target: kept
        hooks
            .record_target_certificate(id, "https://new.example.com/x", seen, Duration::days(14))
            .await
            .unwrap();
        let mut renamed = fields("https://new.example.com/x");
        renamed.name = "renamed".into();
        tenant
            .subscription_update("test", id, renamed, None)
            .await
            .unwrap();
        assert_eq!(
            stored(&store, id).await.target_certificate_expires_at,
            Some(seen.expires_at)
        );
        // deleted: nothing is written
        tenant.subscription_delete("test", id, None).await.unwrap();
        let events = hooks
            .record_target_certificate(
                id,
                "https://new.example.com/x",
                TargetCertificate {
                    expires_at: at(now, 2),
                    seen_at: now,
                },
                Duration::days(14),
            )
            .await
            .unwrap();
        assert!(events.is_empty());
    }
}
