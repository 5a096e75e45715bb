//! The incident correlator's driver: an [`OutboxSink`] that reads the status events of the
//! outbox after its cursor (`incidents` in `event_cursors`), feeds them to the
//! [`Correlator`], writes what it decides (incidents, members, tags, its own events) with the
//! cursor in one transaction, and opens the channels' gate up to what is decided.
//!
//! # Why an outbox follower
//! Correlation is per tenant, and in a cluster a tenant's integrations are checked on every
//! replica. The outbox holds every replica's events in one order, so one correlator reading
//! it sees the whole tenant. It is a leader duty, started with the webhook and NATS relays
//! (`Sinks::while_leader`), which are the channels it gates: a new leader adopts the open
//! incidents from the database and resumes from the cursor.
//!
//! It knows which integrations sit in which failure domains from a scan of the live catalog
//! at its first pass, then from the catalog's change feed (which in a cluster carries every
//! replica's changes). Every pass also looks at the egress self-check's verdict.

use std::time::Duration;

use sea_orm::DbErr;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::catalog::Change;
use crate::events::clock::Clock;
use crate::events::hub::EventHub;
use crate::events::incidents::{
    Correlator, Effects, EgressFlag, IncidentSettings, Observed, domain,
};
use crate::events::metrics;
use crate::sinks::{self as sink, OutboxSink, Progress};
use crate::store::SystemStore;
use crate::store::incidents::{incident_row, member_row};

/// The correlator's row in `event_cursors`.
pub const CURSOR: &str = "incidents";
/// Outbox events read per pass.
const BATCH: u64 = 2000;
/// Catalog rows per page of the first scan.
const LOAD_PAGE: u64 = 2000;
/// How often time-driven decisions (held failures, updates, resolutions) are made when no
/// event comes.
const TICK: Duration = Duration::from_millis(250);

/// What the correlator needs besides the sinks' context.
#[derive(Clone, Debug)]
pub struct IncidentOptions {
    pub settings: IncidentSettings,
    /// The vault address (`[connectors.secrets] vault_addr` or `VAULT_ADDR`), for the vault
    /// domain.
    pub vault_addr: Option<String>,
    /// How often an integration without its own interval is checked (`[health]
    /// interval_seconds`): the correlator estimates from it how many were checked.
    pub default_interval: std::time::Duration,
    /// Where this replica announces what it appends (the hub itself when alone).
    pub commits: EventHub,
    /// The egress self-check's verdict.
    pub egress: EgressFlag,
    pub clock: Clock,
}

/// The running egress self-check ([`crate::health::egress`]), stopped with the sinks. Every
/// replica runs its own: each has its own way out.
pub struct EgressProbe(pub JoinHandle<()>);

#[async_trait::async_trait]
impl sink::Started for EgressProbe {
    async fn stop(self: Box<Self>) {
        self.0.abort();
        let _ = self.0.await;
    }
}

/// A running correlator.
pub struct Incidents {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Incidents {
    /// Starts the correlator; `None` when the settings turn incidents off.
    pub fn start(ctx: &sink::Context, options: IncidentOptions) -> Option<Self> {
        if !options.settings.enabled {
            return None;
        }
        let (stop, stopped) = watch::channel(false);
        let correlating = Correlating {
            system: ctx.store.system(),
            gate: ctx.hub.clone(),
            changes: ctx.changes.follow(),
            correlator: Correlator::new(options.settings.clone()),
            options,
            loaded: false,
            cursor: 0,
            pending: None,
            egress_down: false,
        };
        let drive = sink::Drive {
            latest: Some(ctx.hub.latest()),
            poll: TICK,
            backoff: Backoff::try_new(Duration::from_millis(200), Duration::from_secs(5), 0.2)
                .expect("valid backoff"),
            stop: stopped,
        };
        Some(Self {
            stop,
            task: sink::spawn(correlating, drive),
        })
    }
}

#[async_trait::async_trait]
impl sink::Started for Incidents {
    async fn stop(self: Box<Self>) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Correlating {
    system: SystemStore,
    /// The hub whose gate the channels read.
    gate: EventHub,
    changes: UnboundedReceiver<Change>,
    correlator: Correlator,
    options: IncidentOptions,
    loaded: bool,
    cursor: i64,
    /// Decided but not yet written (a failed write is retried before anything else).
    pending: Option<(Effects, i64)>,
    egress_down: bool,
}

// === impl Correlating ===

impl Correlating {
    fn index(&mut self, m: &entity::integration::Model) {
        if m.deleted_at.is_some() || m.monitoring_paused {
            self.correlator.remove(m.id);
            return;
        }
        let domains = domain::domains_of(
            &m.provider_type,
            &m.config_json,
            m.auth_ref_uri.as_deref(),
            self.options.vault_addr.as_deref(),
        );
        let every = m
            .check_interval_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(
                self.options.default_interval,
                std::time::Duration::from_secs,
            );
        self.correlator.upsert(
            m.id,
            std::sync::Arc::from(m.tenant_id.as_str()),
            domains,
            every,
        );
    }

    /// The first pass: the catalog's live integrations, the incidents left open, the cursor.
    async fn load(&mut self) -> Result<(), DbErr> {
        let mut after = None;
        loop {
            let page = self.system.live_integrations(after, LOAD_PAGE).await?;
            after = page.last().map(|m| m.id);
            for m in &page {
                self.index(m);
            }
            if (page.len() as u64) < LOAD_PAGE {
                break;
            }
        }
        for (incident, members) in self.system.open_incidents().await? {
            if let Some(row) = incident_row(&incident) {
                self.correlator
                    .adopt(&row, members.iter().map(member_row).collect());
            }
        }
        self.cursor = self.system.cursor(CURSOR).await?;
        self.loaded = true;
        tracing::info!(
            message = "Incident correlation started.",
            integrations = self.correlator.known(),
            cursor = self.cursor,
        );
        Ok(())
    }

    async fn write(&mut self, fx: Effects, cursor: i64) -> Result<(), DbErr> {
        match self
            .system
            .incidents_apply(&fx, Some((CURSOR, cursor)))
            .await
        {
            Ok(stored) => {
                metrics::events_written(stored.len());
                self.options.commits.publish(stored);
                self.cursor = cursor;
                Ok(())
            }
            Err(error) => {
                self.pending = Some((fx, cursor));
                Err(error)
            }
        }
    }
}

#[async_trait::async_trait]
impl OutboxSink for Correlating {
    type Error = DbErr;

    fn name(&self) -> &'static str {
        "incidents"
    }

    async fn pass(&mut self) -> Result<Progress, DbErr> {
        if !self.loaded {
            self.load().await?;
        }
        if let Some((fx, cursor)) = self.pending.take() {
            self.write(fx, cursor).await?;
        }
        while let Ok(change) = self.changes.try_recv() {
            match change {
                Change::IntegrationUpserted(m) => self.index(&m),
                Change::IntegrationDeleted { id, .. } => self.correlator.remove(id),
                _ => {}
            }
        }
        let mut fx = Effects::default();
        let now = self.options.clock.now();
        let down = self.options.egress.is_down();
        if down != self.egress_down {
            self.egress_down = down;
            self.correlator.egress(down, now, &mut fx);
        }
        let events = self.system.events_after(self.cursor, BATCH).await?;
        let mut cursor = self.cursor;
        for e in &events {
            cursor = e.seq;
            if let Some(o) = Observed::from_event(e) {
                self.correlator.observe(&o, now, &mut fx);
            }
        }
        self.correlator.tick(now, &mut fx);
        if !fx.is_empty() || cursor != self.cursor {
            self.write(fx, cursor).await?;
        }
        self.gate.open_gate(self.correlator.gate(now, self.cursor));
        Ok(if events.len() as u64 >= BATCH {
            Progress::More
        } else {
            Progress::Idle
        })
    }
}
