//! Event delivery benchmark: health events through the outbox to a webhook receiver on
//! loopback, with the daemon's own relay and delivery worker (`actors::sinks::webhooks`).
//!
//! Events are appended the way the health engine's result writer appends them (a batch per
//! transaction, then published to the hub), spread over `INTEGRATIONS` integrations of ten
//! tenants, each tenant with one subscription. Two phases:
//!
//! 1. steady: `RATE` events/s for `SECONDS`; the receiver records, for each delivery, the
//!    delay from the event's `time` (when the status change was decided, just before its
//!    transaction) to its arrival. Prints p50/p99/max over the window after a 3 s warm-up.
//! 2. backlog: `BACKLOG` events appended while delivery is stopped, then delivery started;
//!    prints how fast the backlog drains (events/s).
//!
//! Usage: `event-delivery DATABASE_URL INTEGRATIONS RATE SECONDS BACKLOG [MAX_EVENTS
//! [MAX_DELAY_MS]]` (an empty database; it is migrated here). `SECONDS` 0 skips the steady
//! phase, `BACKLOG` 0 the backlog. With `MAX_EVENTS`, every subscription is batched
//! (`batch: {maxEvents, maxDelayMs}`, 100 ms by default). Webhook settings are the defaults.
//! `bench/delivery.py` runs it at increasing rates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::events::hub::EventHub;
use actors::events::{EventKind, NewEvent};
use actors::sinks::webhooks::{WebhookSettings, Webhooks};
use actors::store::webhooks::{Batching, SubscriptionFields};
use actors::{Store, TenantId};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler};
use uuid::Uuid;

/// The daemon's allocator, so the comparison is of the code, not of the allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TENANTS: usize = 10;

#[derive(Default)]
struct Receiver {
    received: AtomicU64,
    /// Milliseconds from event time to arrival, with the arrival time.
    delays: Mutex<Vec<(Instant, f64)>>,
}

#[handler]
async fn hook(body: Vec<u8>, receiver: Data<&Arc<Receiver>>) -> poem::http::StatusCode {
    let now = Utc::now();
    let arrived = Instant::now();
    let events = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(batch)) => batch,
        Ok(event) => vec![event],
        Err(_) => Vec::new(),
    };
    receiver
        .received
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    let mut delays = receiver.delays.lock().unwrap();
    for event in events {
        let time = event["time"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        if let Some(time) = time {
            let ms = (now - time.to_utc()).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            delays.push((arrived, ms));
        }
    }
    poem::http::StatusCode::NO_CONTENT
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Bench {
    store: Store,
    hub: EventHub,
    integrations: Vec<(Arc<str>, Uuid)>,
    next: usize,
}

impl Bench {
    /// Appends `n` events in one transaction, round-robin over the integrations.
    async fn append(&mut self, n: usize) -> anyhow::Result<()> {
        let events: Vec<NewEvent> = (0..n)
            .map(|_| {
                let (tenant, id) = self.integrations[self.next % self.integrations.len()].clone();
                self.next += 1;
                NewEvent::new(
                    EventKind::HealthChanged,
                    tenant,
                    Some(id),
                    Utc::now(),
                    serde_json::json!({"status": "unhealthy", "previousStatus": "healthy"}),
                )
            })
            .collect();
        let stored = self.store.system().write_results(&[], &[], &events).await?;
        self.hub.publish(stored);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let args: Vec<String> = std::env::args().collect();
    let (url, integrations, rate, seconds, backlog, batch) = match args.as_slice() {
        [_, url, integrations, rate, seconds, backlog, rest @ ..] if rest.len() <= 2 => {
            let batch = match rest {
                [] => None,
                [events, delay @ ..] => Some(Batching {
                    max_events: events.parse().context("MAX_EVENTS")?,
                    max_delay_ms: delay
                        .first()
                        .map_or(Ok(100), |d| d.parse())
                        .context("MAX_DELAY_MS")?,
                }),
            };
            (url, integrations, rate, seconds, backlog, batch)
        }
        _ => bail!(
            "usage: event-delivery DATABASE_URL INTEGRATIONS RATE SECONDS BACKLOG [MAX_EVENTS [MAX_DELAY_MS]]"
        ),
    };
    let integrations: usize = integrations.parse().context("INTEGRATIONS")?;
    let rate: u64 = rate.parse().context("RATE")?;
    let seconds: u64 = seconds.parse().context("SECONDS")?;
    let backlog: usize = backlog.parse().context("BACKLOG")?;

    let db = actors::db::connect(url, &actors::db::PoolSettings::default()).await?;
    actors::db::migrate(&db).await?;
    let store = Store::new(db);

    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .context("receiver address")?;
    let receiver = Arc::new(Receiver::default());
    let app = Route::new()
        .at("/hook", poem::post(hook))
        .data(receiver.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));

    let secrets = tempfile::tempdir()?;
    let env = connectors::ConnectorEnv::new(&connectors::Settings {
        outbound: connectors::settings::OutboundSettings {
            allow_private_networks: vec!["127.0.0.1/32".into()],
            ..Default::default()
        },
        secrets: connectors::settings::SecretsSettings {
            secrets_dir: Some(secrets.path().to_owned()),
            ..Default::default()
        },
    })?;
    let mut bench = Bench {
        store: store.clone(),
        hub: EventHub::default(),
        integrations: Vec::new(),
        next: 0,
    };
    for t in 0..TENANTS {
        let tenant = format!("bench-{t}");
        let folder = secrets.path().join("tenants").join(&tenant);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("hook"), "whsec_bench")?;
        store
            .tenant(TenantId::new(&tenant)?)
            .subscription_create(
                "bench",
                SubscriptionFields {
                    name: "receiver".into(),
                    target_url: format!("http://{addr}/hook"),
                    event_types: vec![],
                    integration_ids: vec![],
                    secret_auth_ref_uri: format!("authref://file/tenants/{tenant}/hook"),
                    enabled: true,
                    incident_members: Default::default(),
                    batch,
                },
            )
            .await?;
    }
    for i in 0..integrations {
        let tenant: Arc<str> = format!("bench-{}", i % TENANTS).into();
        bench.integrations.push((tenant, Uuid::now_v7()));
    }
    let settings = WebhookSettings::default();
    let sinks = actors::sinks::Context {
        store: store.clone(),
        env: env.clone(),
        hub: bench.hub.clone(),
        changes: Default::default(),
    };

    // Phase 1: steady rate, delay from event time to arrival.
    if seconds > 0 {
        steady(
            &mut bench,
            &sinks,
            &settings,
            &receiver,
            rate,
            seconds,
            integrations,
        )
        .await?;
    }
    if backlog > 0 {
        drain(&mut bench, &sinks, &settings, &receiver, backlog).await?;
    }
    Ok(())
}

async fn steady(
    bench: &mut Bench,
    sinks: &actors::sinks::Context,
    settings: &WebhookSettings,
    receiver: &Receiver,
    rate: u64,
    seconds: u64,
    integrations: usize,
) -> anyhow::Result<()> {
    let webhooks = Webhooks::start(sinks, settings)?.context("enabled")?;
    let tick = Duration::from_millis(50);
    let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut due = 0.0f64;
    let mut ticker = tokio::time::interval(tick);
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        due += per_tick;
        let n = due.floor() as usize;
        due -= n as f64;
        if n > 0 {
            bench.append(n).await?;
            sent += n as u64;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warm = started + Duration::from_secs(3);
    let mut delays: Vec<f64> = receiver
        .delays
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= warm)
        .map(|(_, ms)| *ms)
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "steady: {rate} events/s offered over {integrations} integrations for {seconds} s: \
         {sent} appended, {} delivered; delay event->delivery (after 3 s warm-up, n={}): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        receiver.received.load(Ordering::Relaxed),
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN),
    );
    webhooks.stop().await;
    Ok(())
}

/// Phase 2: a backlog appended while delivery is stopped, then drained.
async fn drain(
    bench: &mut Bench,
    sinks: &actors::sinks::Context,
    settings: &WebhookSettings,
    receiver: &Receiver,
    backlog: usize,
) -> anyhow::Result<()> {
    let before = receiver.received.load(Ordering::Relaxed);
    let mut left = backlog;
    while left > 0 {
        let n = left.min(1000);
        bench.append(n).await?;
        left -= n;
    }
    let started = Instant::now();
    let webhooks = Webhooks::start(sinks, settings)?.context("enabled")?;
    let deadline = started + Duration::from_secs(600);
    while receiver.received.load(Ordering::Relaxed) < before + backlog as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let drained = receiver.received.load(Ordering::Relaxed) - before;
    webhooks.stop().await;
    println!(
        "backlog: {drained} of {backlog} events delivered in {took:.2} s: {:.0} events/s",
        drained as f64 / took
    );
    Ok(())
}
