//! `GET /api/v1/events`: the caller's tenant's health events as a server-sent event stream.
//!
//! Each SSE message is one CloudEvent (JSON) whose SSE `id` is its outbox sequence number. A
//! client that reconnects with `Last-Event-ID` (or `?after=`) first gets every event it missed
//! from the outbox, then live events, with no gap and no duplicate in between.

use std::sync::Arc;
use std::time::Duration;

use actors::TenantId;
use actors::events::hub::EventHub;
use actors::events::{StoredEvent, TypeFilter};
use actors::store::events::EventQuery;
use poem::web::Data;
use poem::web::sse::Event;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::EventStream;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{Object, OpenApi};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::ApiTags;
use super::error::{ApiError, Problems, status as s};
use super::security::BearerAuth;
use crate::AppState;
use crate::auth::Scope;

/// Events read from the outbox per query while catching up.
const BACKFILL_PAGE: u64 = 500;
/// Events queued for one slow client before its stream waits.
const CLIENT_BUFFER: usize = 256;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The stream's events, as the feed hands them over.
type Events = futures::stream::BoxStream<'static, CloudEvent>;

/// A health event in CloudEvents 1.0 structured JSON.
#[derive(Debug, Clone, Object)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event; the idempotency key of every delivery of it.
    pub id: String,
    /// `/tenants/{tenant}/integrations/{integrationId}`.
    pub source: String,
    /// Such as `dev.stellaops.integration.health.changed`.
    #[oai(rename = "type")]
    pub event_type: String,
    /// The integration's id.
    pub subject: Option<String>,
    /// When the event happened (RFC 3339).
    pub time: String,
    /// `application/json`.
    pub datacontenttype: String,
    /// The tenant (a CloudEvents extension attribute).
    pub tenant: String,
    /// The event's details: `integrationId`, `integrationType`, `status`, `previousStatus`,
    /// `reason`, and per type `message`, `latencyMs`, `reminder`, `flapping`, `expiresAt`.
    pub data: serde_json::Value,
    /// The outbox sequence number (sent as the SSE `id`, not in the JSON).
    #[oai(skip)]
    pub seq: i64,
}

impl CloudEvent {
    fn from_stored(e: &StoredEvent) -> Option<Self> {
        let mut event = Self::parse_from_json(Some(e.payload.clone())).ok()?;
        event.seq = e.seq;
        Some(event)
    }
}

pub struct EventsApi;

/// The `Last-Event-ID` a reconnecting client sent, read from the raw header: a value that is
/// not text (which the typed header parameter would silently drop, restarting the stream at
/// the next event and losing the gap) or not one of this stream's ids is refused, never
/// ignored.
fn last_event_id(request: &poem::Request) -> Result<Option<i64>, ApiError> {
    let refused = || ApiError::invalid("Last-Event-ID", "not an event id from this stream");
    let mut lines = request.headers().get_all("last-event-id").iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return match request.headers().contains_key("last-event-id") {
            true => Err(refused()),
            false => Ok(None),
        };
    };
    let text = std::str::from_utf8(line.as_bytes()).map_err(|_| refused())?;
    match text.trim() {
        "" => Ok(None),
        id => id.parse::<i64>().map(Some).map_err(|_| refused()),
    }
}

#[OpenApi(prefix_path = "/api/v1/events", tag = "ApiTags::Events")]
impl EventsApi {
    /// Stream health events
    ///
    /// Server-sent events: one CloudEvent per message, the message `id` being the event's
    /// position in the tenant's event log. Reconnect with `Last-Event-ID` (browsers do so by
    /// themselves) or `?after=` to receive exactly the events missed meanwhile. Without
    /// either, the stream starts with the next event. A stream ends after
    /// `[events] stream_max_seconds` (an hour by default); reconnecting resumes it.
    #[oai(path = "/", method = "get", operation_id = "event_stream")]
    // One parameter per documented input, plus the raw request for `Last-Event-ID`.
    #[allow(clippy::too_many_arguments)]
    async fn event_stream(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(scope = "Scope::Read")] auth: BearerAuth,
        /// Only these event types; `prefix.*` matches a family, such as
        /// `dev.stellaops.integration.health.*`. Repeat for several.
        #[oai(name = "type")]
        types: Query<Vec<String>>,
        /// Only events of this integration.
        #[oai(name = "integrationId")]
        integration_id: Query<Option<Uuid>>,
        /// Resume after this event id (the same as `Last-Event-ID`).
        after: Query<Option<i64>>,
        /// The id of the last event received, sent by reconnecting SSE clients.
        #[oai(name = "Last-Event-ID")]
        _last_event_id: Header<Option<String>>,
        request: &poem::Request,
    ) -> Result<EventStream<Events>, Problems<{ s::AUTHENTICATED | s::PARAMETERS | s::NOT_FOUND }>>
    {
        let principal = auth.require(Scope::Read)?;
        let filter =
            TypeFilter::new(types.0).map_err(|e| ApiError::invalid("type", e.to_string()))?;
        let resume = match last_event_id(request)? {
            None => after.0,
            some => some,
        };
        if let Some(id) = integration_id.0 {
            state
                .store
                .tenant(principal.tenant.clone())
                .integration_get(id)
                .await?;
        }
        let query = EventQuery {
            after: resume.unwrap_or(0).max(0),
            types: filter,
            integration_id: integration_id.0,
            limit: BACKFILL_PAGE,
        };
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        let (store, hub, tenant) = (
            state.store.clone(),
            state.events.clone(),
            principal.tenant.clone(),
        );
        let deadline = tokio::time::Instant::now() + state.stream_max;
        let mut shutting_down = state.shutting_down.clone();
        tokio::spawn(async move {
            // The stream ends at its deadline or when the daemon stops; the client resumes
            // with Last-Event-ID.
            tokio::select! {
                _ = tokio::time::timeout_at(
                    deadline,
                    feed(store, hub, tenant, query, resume.is_some(), tx),
                ) => {}
                _ = shutting_down.wait_for(|stopping| *stopping) => {}
            }
        });
        // Nothing is sent before the first event: a `retry:` field would set the clients'
        // reconnection delay, which is theirs to choose. Idle streams get a comment line every
        // KEEP_ALIVE.
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        Ok(EventStream::new(Box::pin(stream) as Events)
            .keep_alive(KEEP_ALIVE)
            .to_event(|event| Event::message(event.to_json_string()).id(event.seq.to_string())))
    }
}

/// Sends the client the events it missed (when resuming), then live ones, until it leaves.
async fn feed(
    store: actors::Store,
    hub: EventHub,
    tenant: TenantId,
    mut query: EventQuery,
    resume: bool,
    tx: mpsc::Sender<CloudEvent>,
) {
    // Subscribe before reading the outbox, so nothing committed meanwhile falls in between;
    // what arrives both ways is dropped by its sequence number.
    let mut live = hub.subscribe();
    let tenant_store = store.tenant(tenant.clone());
    let mut catch_up = resume;
    loop {
        if catch_up {
            match backfill(&tenant_store, &mut query, &tx).await {
                Ok(true) => catch_up = false,
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(message = "Reading the event log for a stream failed.", %error);
                    return;
                }
            }
        }
        let event = tokio::select! {
            received = live.recv() => received,
            () = tx.closed() => return,
        };
        match event {
            Ok(event) => {
                if event.tenant_id != tenant.as_str() || !query.matches(&event) {
                    continue;
                }
                query.after = event.seq;
                let Some(event) = CloudEvent::from_stored(&event) else {
                    continue;
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            // Fell behind the live feed: read what was missed from the outbox.
            Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends every stored event after `query.after`; `false` when the client left.
async fn backfill(
    store: &actors::TenantStore,
    query: &mut EventQuery,
    tx: &mpsc::Sender<CloudEvent>,
) -> Result<bool, actors::CatalogError> {
    loop {
        let page = store.events_after(query).await?;
        let full = page.len() as u64 >= query.limit;
        for event in &page {
            query.after = event.seq;
            if let Some(event) = CloudEvent::from_stored(event)
                && tx.send(event).await.is_err()
            {
                return Ok(false);
            }
        }
        if !full {
            return Ok(true);
        }
    }
}
