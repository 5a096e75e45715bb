//! `/api/v1/webhook-subscriptions`: webhook subscriptions for health events, and their
//! deliveries.

use std::collections::HashSet;
use std::sync::Arc;

use actors::events::TypeFilter;
use actors::sinks::webhooks::{self, target};
use actors::store::webhooks::{Batching, DeliveryQuery, SubscriptionFields, SubscriptionQuery};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::error::{ApiError, Problems, status as s};
use super::precondition::IfMatch;
use super::security::BearerAuth;
use super::types::cursor;
use super::types::renamed_field;
use super::types::webhooks::{
    DeliveryState, WebhookDelivery, WebhookDeliveryPage, WebhookSubscription,
    WebhookSubscriptionInput, WebhookSubscriptionPage, WebhookTestResult,
};
use super::{ApiTags, validate};
use crate::AppState;
use crate::auth::Scope;

/// Most entries in `eventTypes`.
pub const MAX_EVENT_TYPES: usize = 32;
/// Most entries in `integrationIds`.
pub const MAX_INTEGRATION_IDS: usize = 100;
/// Most events in one batched POST.
pub const MAX_BATCH_EVENTS: u32 = 1_000;
/// Longest `batch.maxDelayMs`.
pub const MAX_BATCH_DELAY_MS: u32 = 60_000;

#[derive(ApiResponse)]
pub enum SubscriptionCreated {
    /// Created; events committed from now on are delivered to it.
    #[oai(status = 201)]
    Created(
        Json<WebhookSubscription>,
        /// The new subscription's URL.
        #[oai(header = "Location")]
        String,
        /// The subscription's version.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum SubscriptionOk {
    /// The subscription.
    #[oai(status = 200)]
    Ok(
        Json<WebhookSubscription>,
        /// The subscription's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum SubscriptionDeleted {
    /// Deleted; its pending deliveries are dropped (dead).
    #[oai(status = 204)]
    NoContent,
}

fn ok(m: actors::store::webhooks::Subscription) -> SubscriptionOk {
    let etag = validate::etag(m.version);
    SubscriptionOk::Ok(Json(m.into()), etag)
}

fn page_limit(limit: Option<u32>) -> u64 {
    u64::from(limit.unwrap_or(super::integrations::DEFAULT_PAGE_SIZE))
}

pub struct WebhooksApi;

#[OpenApi(
    prefix_path = "/api/v1/webhook-subscriptions",
    tag = "ApiTags::Webhooks"
)]
impl WebhooksApi {
    /// List webhook subscriptions
    ///
    /// The caller's tenant's subscriptions, oldest first, one page at a time: pass the
    /// `nextCursor` of a page as `cursor` to get the next.
    #[oai(path = "/", method = "get", operation_id = "webhook_subscription_list")]
    async fn webhook_subscription_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<WebhookSubscriptionPage>, Problems<{ s::AUTHENTICATED | s::PARAMETERS }>> {
        let principal = auth.require(Scope::Read)?;
        let after = cursor::parse(cursor.0.as_deref(), cursor::decode_uuid)?;
        let page = state
            .store
            .tenant(principal.tenant.clone())
            .subscription_list(&SubscriptionQuery {
                after,
                limit: page_limit(limit.0),
            })
            .await?;
        Ok(Json(WebhookSubscriptionPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(cursor::encode_uuid),
        }))
    }

    /// Get a webhook subscription
    #[oai(
        path = "/:id",
        method = "get",
        operation_id = "webhook_subscription_get"
    )]
    async fn webhook_subscription_get(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<SubscriptionOk, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>> {
        let principal = auth.require(Scope::Read)?;
        let found = state
            .store
            .tenant(principal.tenant.clone())
            .subscription_get(id.0)
            .await?;
        Ok(ok(found))
    }

    /// Create a webhook subscription
    ///
    /// Health events of the tenant committed from now on that match the filters are POSTed
    /// to `targetUrl` as `application/cloudevents+json` (or, with `batch`, as
    /// `application/cloudevents-batch+json`, several events per POST), signed with the secret behind
    /// `secretAuthRef` (`X-Stella-Signature-256: sha256=<hex HMAC-SHA256(secret,
    /// "{X-Stella-Timestamp}.{body}")>`), in order per integration, at least once (the event
    /// id is the `Idempotency-Key`). The target is resolved now and refused when the SSRF
    /// guard would refuse it. Audited.
    #[oai(
        path = "/",
        method = "post",
        operation_id = "webhook_subscription_create"
    )]
    async fn webhook_subscription_create(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        body: Json<WebhookSubscriptionInput>,
    ) -> Result<SubscriptionCreated, Problems<{ s::AUTHENTICATED | s::BODY | s::CONFLICT }>> {
        let principal = auth.require(Scope::Write)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        let fields = fields(&state, &tenant, body.0).await?;
        let created = state
            .catalog
            .subscription_create(&principal.tenant, &principal.subject, fields)
            .await?;
        tracing::info!(
            message = "Webhook subscription created.",
            subscription_id = %created.id,
            tenant_id = %principal.tenant,
        );
        let location = state.location(&format!("/api/v1/webhook-subscriptions/{}", created.id));
        let etag = validate::etag(created.version);
        Ok(SubscriptionCreated::Created(
            Json(created.into()),
            location,
            etag,
        ))
    }

    /// Replace a webhook subscription
    ///
    /// Replaces every field. With `If-Match` (the `ETag` of a read), the change applies only
    /// to that version and answers 412 when it is stale. Deliveries already queued keep
    /// going to the new target. Audited.
    #[oai(
        path = "/:id",
        method = "put",
        operation_id = "webhook_subscription_update"
    )]
    async fn webhook_subscription_update(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `ETag` this change was based on, or `*`.
        #[oai(name = "If-Match")]
        if_match: IfMatch,
        body: Json<WebhookSubscriptionInput>,
    ) -> Result<
        SubscriptionOk,
        Problems<
            {
                s::AUTHENTICATED
                    | s::PARAMETERS
                    | s::BODY
                    | s::NOT_FOUND
                    | s::CONFLICT
                    | s::PRECONDITION_FAILED
            },
        >,
    > {
        let principal = auth.require(Scope::Write)?;
        let precondition = validate::if_match(&if_match)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        let current = tenant.subscription_get(id.0).await?;
        let expected_version = precondition
            .expected_version(async { Ok(current.version) })
            .await?;
        let fields = fields(&state, &tenant, body.0).await?;
        let updated = state
            .catalog
            .subscription_update(
                &principal.tenant,
                &principal.subject,
                id.0,
                fields,
                expected_version,
            )
            .await?;
        Ok(ok(updated))
    }

    /// Delete a webhook subscription
    ///
    /// A soft delete: no more deliveries are made and the pending ones become dead; the
    /// audit trail keeps its history. Honours `If-Match` like a replacement.
    #[oai(
        path = "/:id",
        method = "delete",
        operation_id = "webhook_subscription_delete"
    )]
    async fn webhook_subscription_delete(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The `ETag` this delete was based on, or `*`.
        #[oai(name = "If-Match")]
        if_match: IfMatch,
    ) -> Result<
        SubscriptionDeleted,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND | s::PRECONDITION_FAILED }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let tenant = state.store.tenant(principal.tenant.clone());
        let expected_version = validate::if_match(&if_match)?
            .expected_version(async { Ok(tenant.subscription_get(id.0).await?.version) })
            .await?;
        state
            .catalog
            .subscription_delete(
                &principal.tenant,
                &principal.subject,
                id.0,
                expected_version,
            )
            .await?;
        Ok(SubscriptionDeleted::NoContent)
    }

    /// List a subscription's deliveries
    ///
    /// One row per event delivered (or to be delivered) to the subscription, newest first:
    /// the event, its status, attempts, the last answer or error, and when the next attempt
    /// is due.
    #[oai(
        path = "/:id/deliveries",
        method = "get",
        operation_id = "webhook_delivery_list"
    )]
    async fn webhook_delivery_list(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        id: Path<Uuid>,
        /// Only deliveries in this state.
        status: Query<Option<DeliveryState>>,
        /// Page size (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<
        Json<WebhookDeliveryPage>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Read)?;
        let before = cursor::parse(cursor.0.as_deref(), cursor::decode_i64)?;
        let page = state
            .store
            .tenant(principal.tenant.clone())
            .delivery_list(
                id.0,
                &DeliveryQuery {
                    status: status.0.map(DeliveryState::to_store),
                    before,
                    limit: page_limit(limit.0),
                },
            )
            .await?;
        Ok(Json(WebhookDeliveryPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(cursor::encode_i64),
        }))
    }

    /// Retry a dead delivery
    ///
    /// Puts a dead delivery back in the queue with a fresh dead-letter clock; it goes out
    /// before the later pending deliveries of its integration. 409 unless it is dead.
    /// Audited.
    #[oai(
        path = "/:id/deliveries/:deliveryId/retry",
        method = "post",
        operation_id = "webhook_delivery_retry"
    )]
    async fn webhook_delivery_retry(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
        /// The delivery's `id`.
        #[oai(name = "deliveryId")]
        delivery_id: Path<i64>,
    ) -> Result<
        Json<WebhookDelivery>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND | s::CONFLICT }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let requeued = state
            .catalog
            .delivery_retry(&principal.tenant, &principal.subject, id.0, delivery_id.0)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("webhook delivery {} not found", delivery_id.0))
            })?;
        Ok(Json(requeued.into()))
    }

    /// Send a test event
    ///
    /// POSTs one signed event of type `dev.stellaops.webhook.test` to the subscription's
    /// target now, outside the queue (it is not stored or retried), and tells how it went.
    #[oai(
        path = "/:id/test",
        method = "post",
        operation_id = "webhook_subscription_test"
    )]
    async fn webhook_subscription_test(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Write")] auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<
        Json<WebhookTestResult>,
        Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>,
    > {
        let principal = auth.require(Scope::Write)?;
        let subscription = state
            .store
            .tenant(principal.tenant.clone())
            .subscription_get(id.0)
            .await?;
        let result = webhooks::send_test(&state.env, &state.webhooks, &subscription).await;
        Ok(Json(WebhookTestResult {
            event_id: result.event_id,
            delivered: result.delivered(),
            status_code: result.status_code,
            error: result.error,
            latency_ms: result.latency_ms,
        }))
    }
}

/// Validates a request body into the fields to store, each failure a 422 naming the field.
async fn fields(
    state: &AppState,
    tenant: &actors::TenantStore,
    body: WebhookSubscriptionInput,
) -> Result<SubscriptionFields, ApiError> {
    let name = validate::name(&body.name)?;
    let target_url = target::check(&state.env.outbound, &body.target_url)
        .await
        .map_err(|e| ApiError::invalid("targetUrl", e.to_string()))?
        .to_string();
    let event_types = body.event_types.unwrap_or_default();
    if event_types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid(
            "eventTypes",
            format!("at most {MAX_EVENT_TYPES} entries"),
        ));
    }
    for (i, entry) in event_types.iter().enumerate() {
        TypeFilter::new([entry.clone()]).map_err(|e| {
            ApiError::invalid(
                format!("eventTypes[{i}]"),
                format!("{e}; expected a type such as dev.stellaops.integration.health.changed or a prefix ending in .*"),
            )
        })?;
    }
    let mut integration_ids = body.integration_ids.unwrap_or_default();
    if integration_ids.len() > MAX_INTEGRATION_IDS {
        return Err(ApiError::invalid(
            "integrationIds",
            format!("at most {MAX_INTEGRATION_IDS} entries"),
        ));
    }
    let mut seen = HashSet::new();
    integration_ids.retain(|id| seen.insert(*id));
    let missing = tenant.missing_integrations(&integration_ids).await?;
    if let Some(first) = missing.first() {
        let i = integration_ids
            .iter()
            .position(|id| id == first)
            .unwrap_or(0);
        return Err(ApiError::invalid(
            format!("integrationIds[{i}]"),
            "no such integration in this tenant",
        ));
    }
    let secret = renamed_field(
        "secretAuthRef",
        "secretAuthRefUri",
        body.secret_auth_ref,
        body.secret_auth_ref_uri,
    )?
    .ok_or_else(|| ApiError::invalid("secretAuthRef", "required"))?;
    let secret_auth_ref_uri =
        validate::auth_ref(state, tenant.tenant(), "secretAuthRef", Some(secret))?
            .map(|r| r.to_string())
            .unwrap_or_default();
    let batch = match body.batch {
        None => None,
        Some(b) if !(1..=MAX_BATCH_EVENTS).contains(&b.max_events) => {
            return Err(ApiError::invalid(
                "batch.maxEvents",
                format!("from 1 to {MAX_BATCH_EVENTS}"),
            ));
        }
        Some(b) if b.max_delay_ms > MAX_BATCH_DELAY_MS => {
            return Err(ApiError::invalid(
                "batch.maxDelayMs",
                format!("from 0 to {MAX_BATCH_DELAY_MS}"),
            ));
        }
        Some(b) => Some(Batching {
            max_events: b.max_events,
            max_delay_ms: b.max_delay_ms,
        }),
    };
    Ok(SubscriptionFields {
        name,
        target_url,
        event_types,
        integration_ids,
        secret_auth_ref_uri,
        enabled: body.enabled.unwrap_or(true),
        incident_members: body.incident_members.map(Into::into).unwrap_or_default(),
        batch,
    })
}
