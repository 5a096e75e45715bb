//! Start-up: the database and its migrations, the API keys, the plugin registry, the catalog
//! actor and its change feed, the health engine, the event sinks and the HTTP listeners, in
//! that order; then [`run`] serves until the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::cluster::bus::Bus;
use actors::cluster::{ClusterView, Membership};
use actors::db::{self, PoolSettings};
use actors::events::{Alerting, hub::EventHub};
use actors::health::HealthEngine;
use actors::registry::{PluginRegistry, RegistryArgs, SharedRegistry};
use actors::sinks::nats::{NatsConfigError, NatsRelay};
use actors::sinks::webhooks::{InvalidWebhookSettings, Webhooks};
use actors::sinks::{self, Sinks};
use actors::{Catalog, ChangeFeed, Store};

use crate::config::Config;
use crate::server::{Bound, Running};
use crate::{AppState, BOOTSTRAP_TENANT, api, auth, namespaces, telemetry};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the database")]
    Connect(#[source] sea_orm::DbErr),
    #[error("migrating the database")]
    Migrate(#[source] sea_orm::DbErr),
    #[error("reading or storing API keys")]
    Keys(#[source] sea_orm::DbErr),
    #[error("invalid API key configuration")]
    KeyConfig(#[from] auth::api_key::KeyConfigError),
    #[error("starting the catalog actor")]
    Actor(#[from] ractor::SpawnErr),
    #[error("invalid [plugins] settings: {0}")]
    Plugins(String),
    #[error("invalid [connectors] settings")]
    Connectors(#[source] connectors::EnvError),
    #[error("starting the health engine")]
    Health(#[from] actors::health::EngineError),
    #[error("invalid [events.webhooks] settings")]
    Webhooks(#[from] InvalidWebhookSettings),
    #[error("invalid [events.nats] settings")]
    Nats(#[from] NatsConfigError),
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("reading [telemetry] metrics_bearer_token_file {path}")]
    MetricsToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    #[error(
        "[auth.jwt] issuer must be an http(s) URL when jwks_url is not set (the keys are discovered from it)"
    )]
    JwtIssuer,
    #[error("invalid [http] public_url: {0}")]
    PublicUrl(&'static str),
    #[error("invalid [cluster] settings")]
    ClusterSettings(#[from] actors::cluster::InvalidClusterSettings),
    #[error("invalid [incidents] settings")]
    Incidents(#[from] actors::events::incidents::InvalidIncidentSettings),
    #[error("invalid [incidents.egress] settings")]
    Egress(#[from] actors::health::egress::InvalidProbe),
    #[error("[cluster] enabled needs PostgreSQL: an SQLite database serves one process only")]
    ClusterOnSqlite,
    #[error("joining the cluster")]
    Cluster(#[from] actors::cluster::membership::JoinError),
    #[error(
        "the SQLite database {path} is in use by another process (an SQLite database serves one daemon; run several replicas on PostgreSQL with [cluster] enabled)"
    )]
    SqliteInUse { path: std::path::PathBuf },
    #[error("locking the SQLite database {path}")]
    SqliteLock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Connects to the database and applies pending migrations.
///
/// # Errors
/// [`Error::Connect`] or [`Error::Migrate`].
pub async fn migrate(config: &Config) -> Result<(), Error> {
    let db = db::connect(&config.database.url, &pool_settings(config))
        .await
        .map_err(Error::Connect)?;
    db::migrate(&db).await.map_err(Error::Migrate)
}

fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        max_connections: config.database.max_connections,
        ..PoolSettings::default()
    }
}

/// What [`check`] built while validating, for [`start`] to use.
pub struct Checked {
    metrics_token: Option<api::metrics::MetricsToken>,
    nats: Option<actors::sinks::nats::RelayConfig>,
    plugins: connectors::external::PluginSettings,
    env: connectors::ConnectorEnv,
}

/// Validates `config` as start-up does, without starting anything or touching the database:
/// every section's settings, the configured API keys, the tenants' secret namespaces, the
/// metrics token file (read), and that a cluster runs on PostgreSQL.
///
/// # Errors
/// The first problem found, as [`start`] would report it.
pub fn check(config: &Config) -> Result<Checked, Error> {
    let metrics_token = match &config.telemetry.metrics_bearer_token_file {
        Some(path) => Some(
            api::metrics::MetricsToken::from_file(path).map_err(|source| Error::MetricsToken {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    if let Some(url) = &config.http.public_url {
        public_url(url)?;
    }
    if let Some(jwt) = config.auth.jwt.as_ref().filter(|j| j.jwks_url.is_none()) {
        let discoverable = url::Url::parse(&jwt.issuer)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !discoverable {
            return Err(Error::JwtIssuer);
        }
    }
    let nats = config.events.nats.relay_config()?;
    config.events.webhooks.validate()?;
    config.cluster.validate()?;
    if config.cluster.enabled && config.database.url.starts_with("sqlite:") {
        return Err(Error::ClusterOnSqlite);
    }
    if config.health.enabled {
        config
            .health
            .schedule()
            .map_err(|e| Error::Health(e.into()))?;
    }
    for key in &config.auth.api_keys {
        auth::api_key::StoredKey::try_from(key)?;
    }
    let plugins = config.plugins.settings().map_err(Error::Plugins)?;
    let env = connectors::ConnectorEnv::new(&config.connectors).map_err(Error::Connectors)?;
    config.incidents.validate()?;
    actors::health::egress::validate(&config.incidents.egress, env.outbound.guard())?;
    Ok(Checked {
        metrics_token,
        nats,
        plugins,
        env,
    })
}

/// `http.public_url` as `Location` headers begin with it: an absolute http(s) URL with no
/// credentials, query or fragment, without its trailing `/`.
///
/// # Errors
/// [`Error::PublicUrl`] naming the problem (never the value).
fn public_url(value: &str) -> Result<String, Error> {
    let url = url::Url::parse(value).map_err(|_| Error::PublicUrl("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::PublicUrl("must be an http or https URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::PublicUrl("must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::PublicUrl("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Starts the daemon: database, migrations, actors, and the HTTP server.
///
/// # Errors
/// See [`Error`].
pub async fn start(config: Config) -> Result<Running, Error> {
    // Refused before anything starts (what `check-config` checks too).
    let Checked {
        metrics_token,
        nats: nats_config,
        plugins: plugin_settings,
        env,
    } = check(&config)?;
    // Before any instrument exists: instruments bind to the provider installed first.
    let metrics = telemetry::metrics(&config);
    let metrics = api::metrics::endpoint(metrics, metrics_token);
    let sqlite_lock = single_process_lock(&config.database.url)?;
    if config.cluster.enabled && sqlite_lock.is_some() {
        return Err(Error::ClusterOnSqlite);
    }
    let db = db::connect(&config.database.url, &pool_settings(&config))
        .await
        .map_err(Error::Connect)?;
    if config.cluster.enabled && db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Err(Error::ClusterOnSqlite);
    }
    db::migrate(&db).await.map_err(Error::Migrate)?;
    if db::role_bypasses_rls(&db).await.unwrap_or(false) {
        tracing::warn!(
            message = "The database role is a superuser or has BYPASSRLS: row-level security does not apply. Connect as an unprivileged role in production."
        );
    }
    let store = Store::new(db);

    let http = reqwest::Client::builder()
        .user_agent(concat!("stella-integrations/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(Error::HttpClient)?;
    // Calls to the other replicas of a cluster (their advertised URLs, set by the operator).
    let peer_client = reqwest::Client::builder()
        .user_agent(concat!("stella-integrations/", env!("CARGO_PKG_VERSION")))
        .timeout(
            config
                .health
                .schedule()
                .map_or(Duration::from_secs(30), |s| {
                    s.timeout + Duration::from_secs(5)
                }),
        )
        .build()
        .map_err(Error::HttpClient)?;
    let generated_admin_key = bootstrap_admin_key(&config, &store).await?;
    let stored = auth::stored::StoredKeys::new(store.clone());
    stored.spawn();
    let authenticator = Arc::new(auth::Authenticator::new(&config.auth, Some(stored), http)?);

    let registry: SharedRegistry =
        Arc::new(std::sync::RwLock::new(connectors::Registry::with_builtins()));
    // Every committed catalog change is announced here; the engine follows from before the
    // first writer starts, so it misses nothing.
    let changes = ChangeFeed::default();
    let followed = changes.follow();
    let (plugins, plugins_handle) = PluginRegistry::start(RegistryArgs {
        store: store.clone(),
        registry: registry.clone(),
        dirs: config.plugins.dirs.clone(),
        settings: plugin_settings,
        changes: changes.clone(),
    })
    .await?;
    let (catalog, catalog_handle) =
        Catalog::start(store.clone(), config.catalog.workers, changes.clone()).await?;
    tokio::spawn(namespaces::report(store.clone(), env.secrets.clone()));
    let membership = if config.cluster.enabled {
        // The name the telemetry resource carries as `service.instance.id` too.
        let replica = (config.cluster.replica_id.clone())
            .unwrap_or_else(|| telemetry::instance_id(&config).to_owned());
        Some(Membership::start(&store, &config.cluster, replica).await?)
    } else {
        None
    };
    let cluster = membership.as_ref().map(|m| ClusterView {
        replica: m.replica().clone(),
        shards: m.shards(),
        ownership: m.ownership(),
    });
    let hub = EventHub::default();
    if config.incidents.enabled {
        // The channels wait for the correlator's first decisions.
        hub.close_gate();
    }
    let egress = actors::events::incidents::EgressFlag::default();
    let egress_probe = actors::health::egress::spawn(
        &config.incidents.egress,
        env.outbound.guard().clone(),
        egress.clone(),
    );
    // In a cluster the outbox is appended by every replica: the hub here is fed in sequence
    // order by the bus's outbox follower, which the local writer only wakes.
    let local_commits = if cluster.is_some() {
        EventHub::default()
    } else {
        hub.clone()
    };
    let (stop_bus, bus_stopped) = tokio::sync::watch::channel(false);
    let bus = match &cluster {
        Some(cluster) => Some(
            Bus::start(
                store.clone(),
                cluster.replica.clone(),
                &changes,
                hub.clone(),
                local_commits.latest(),
                bus_stopped,
            )
            .await
            .map_err(|e| Error::Cluster(e.into()))?,
        ),
        None => None,
    };
    let health = if config.health.enabled {
        Some(
            HealthEngine::start(
                store.clone(),
                &config.health,
                registry.clone(),
                env.clone(),
                followed,
                Alerting {
                    settings: config.events.alerts.clone(),
                    hub: local_commits.clone(),
                    clock: Default::default(),
                    egress: egress.clone(),
                },
                cluster.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    // The event sinks, each one line; a sink turned off by its settings is `None`.
    let sink_context = sinks::Context {
        store: store.clone(),
        env: env.clone(),
        hub: hub.clone(),
        changes: changes.clone(),
    };
    let webhook_settings = config.events.webhooks.clone();
    let incident_options = actors::sinks::incidents::IncidentOptions {
        settings: config.incidents.clone(),
        vault_addr: config
            .connectors
            .secrets
            .vault_addr
            .clone()
            .or_else(|| std::env::var(connectors::settings::ENV_VAULT_ADDR).ok()),
        default_interval: std::time::Duration::from_secs(config.health.interval_seconds),
        commits: local_commits.clone(),
        egress,
        clock: Default::default(),
    };
    let start_sinks = move || {
        let mut sinks = Sinks::default();
        // First: it gates the two channels below.
        sinks.add(actors::sinks::incidents::Incidents::start(
            &sink_context,
            incident_options.clone(),
        ));
        // Validated above, so starting cannot fail here.
        sinks.add(
            Webhooks::start(&sink_context, &webhook_settings)
                .ok()
                .flatten(),
        );
        sinks.add(
            nats_config
                .clone()
                .map(|relay| NatsRelay::start(&sink_context, relay)),
        );
        sinks
    };
    // In a cluster the sinks are the leader's: one relay per cluster keeps each event going
    // out once.
    let sinks = match &cluster {
        Some(cluster) => {
            let mut on_leader = Sinks::default();
            on_leader.add(Some(Sinks::while_leader(
                cluster.ownership.clone(),
                start_sinks,
            )));
            on_leader
        }
        None => start_sinks(),
    };
    let mut sinks = sinks;
    sinks.add(egress_probe.map(actors::sinks::incidents::EgressProbe));
    let (shutdown_streams, shutting_down) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        store,
        catalog: catalog.clone(),
        registry,
        plugins: plugins.clone(),
        auth: authenticator.clone(),
        env,
        health: health.clone(),
        events: hub,
        webhooks: config.events.webhooks.clone(),
        stream_max: Duration::from_secs(config.events.stream_max_seconds.max(1)),
        verify_timeout: Duration::from_secs(config.health.timeout_seconds),
        cluster: cluster.map(|view| api::cluster::ClusterState {
            view,
            lease_ttl: config.cluster.lease_ttl(),
            client: peer_client.clone(),
        }),
        shutting_down,
        public_url: config
            .http
            .public_url
            .as_deref()
            .map(public_url)
            .transpose()?,
    });
    spawn_housekeeping(Arc::downgrade(&state));
    // Keys about to expire are announced like other expiring credentials, through the health
    // engine's writer (no engine, no announcement).
    if let Some(health) = &health {
        tokio::spawn(auth::stored::warn_expiring(
            state.store.clone(),
            health.clone(),
            Duration::from_secs(config.events.alerts.credential_warning_seconds),
            state.shutting_down.clone(),
        ));
    }

    // Both listeners are bound before either serves, so that a refused address starts none.
    let main_listener = Bound::bind(config.http.listen).await?;
    let (main_metrics, metrics) = match config.telemetry.metrics_listen {
        Some(addr) => {
            let listener = Bound::bind(addr).await?;
            (None, Some(listener.serve(api::metrics::routes(metrics))))
        }
        None => (Some(metrics), None),
    };
    let app = api::routes(state, config.http.body_limit_bytes, main_metrics);
    let server = main_listener.serve(app);
    if let Some(addr) = &metrics {
        tracing::info!(message = "Serving /metrics on a listener of its own.", addr = %addr.addr);
    }
    if config.telemetry.metrics_exposed(&config.http) {
        tracing::warn!(
            message = "/metrics is served without a token on a listener beyond loopback; its labels name every tenant. Set [telemetry] metrics_listen to a loopback or private address, or metrics_bearer_token_file.",
            addr = %metrics.as_ref().map_or(server.addr, |m| m.addr),
        );
    }
    tracing::info!(message = "Listening.", addr = %server.addr);
    Ok(Running {
        metrics,
        generated_admin_key,
        server,
        shutdown_streams,
        catalog,
        catalog_handle,
        health,
        sinks,
        plugins,
        plugins_handle,
        membership,
        bus: bus.map(|bus| (stop_bus, bus)),
        _sqlite_lock: sqlite_lock,
        reloader: crate::reload::Reloader::new(authenticator, config),
    })
}

/// Starts the daemon and serves until `shutdown` completes. A generated administrator key is
/// printed once to standard error (never to the log).
///
/// # Errors
/// See [`start`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    run_reloading(config, shutdown, futures::stream::pending(), || {
        unreachable!("no reload is asked for")
    })
    .await
}

/// [`run`], applying `load()` (the configuration read again) each time `reloads` yields: the
/// binary's `SIGHUP`. See [`crate::reload`].
///
/// # Errors
/// See [`start`].
pub async fn run_reloading(
    config: Config,
    shutdown: impl Future<Output = ()>,
    reloads: impl futures::Stream<Item = ()>,
    load: impl Fn() -> Result<Config, crate::config::ConfigError>,
) -> Result<(), Error> {
    let running = start(config).await?;
    if let Some(key) = &running.generated_admin_key {
        eprintln!(
            "\nNo API keys were configured, so an administrator key was generated for tenant \
             `{BOOTSTRAP_TENANT}`.\nIt is shown only this once; only its hash is stored:\n\n    {key}\n"
        );
    }
    running.serve_reloading(shutdown, reloads, load).await
}

/// With no API key configured or stored and no JWT authority, generates an administrator key
/// for the `default` tenant and stores its digest.
async fn bootstrap_admin_key(config: &Config, store: &Store) -> Result<Option<String>, Error> {
    if !config.auth.api_keys.is_empty() || config.auth.jwt.is_some() {
        return Ok(None);
    }
    if store.api_keys_exist().await.map_err(Error::Keys)? {
        return Ok(None);
    }
    let key = auth::api_key::generate();
    store
        .api_key_insert(entity::api_key::Model {
            id: "bootstrap-admin".into(),
            tenant_id: BOOTSTRAP_TENANT.into(),
            key_sha256: hex::encode(auth::api_key::digest(&key)),
            scopes: serde_json::json!(auth::api_key::all_scopes()),
            created_at: chrono::Utc::now(),
            name: Some("bootstrap administrator".into()),
            expires_at: None,
            last_used_at: None,
            created_by: None,
            expiry_warned_at: None,
        })
        .await
        .map_err(Error::Keys)?;
    tracing::info!(
        message = "Generated the bootstrap administrator key.",
        tenant_id = BOOTSTRAP_TENANT
    );
    Ok(Some(key))
}

fn spawn_housekeeping(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match state.upgrade() {
                Some(state) => state.auth.housekeeping(),
                None => break,
            }
        }
    });
}

/// On SQLite, an exclusive lock on `<database>.lock` held while the daemon runs: a second
/// process on the same file fails at once instead of sharing a database meant for one. `None`
/// for PostgreSQL and in-memory databases.
fn single_process_lock(url: &str) -> Result<Option<std::fs::File>, Error> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(format!("{path}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::SqliteLock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::SqliteInUse {
            path: path.with_extension(""),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::SqliteLock { path, source }),
    }
}
