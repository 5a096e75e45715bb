//! The StellaOps Integrations hub daemon.
//!
//! # Layout
//! - [`config`]: the TOML configuration and its environment overrides.
//! - [`auth`]: bearer tokens (API keys, JWTs) into principals with a tenant and scopes.
//! - [`api`]: the poem-openapi REST API and its problem+json error mapping.
//! - [`telemetry`] sets up logging.
//! - [`namespaces`]: the start-up check of stored credential references against the tenants'
//!   secret namespaces.
//! - This file: [`start`] wires it all together (database, migrations, the catalog actor, the
//!   health engine, the webhook relay and delivery worker, the HTTP server) and [`Running`]
//!   stops it gracefully.
//!
//! The binary (`main.rs`) only parses arguments, loads the configuration and calls [`run`];
//! tests call [`start`] on port 0 and talk HTTP to it like any client.

// `ApiError` is a poem-openapi response enum returned by value from every operation; errors
// are the cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

/// jemalloc: the health engine and the API allocate many small, short-lived objects from a few
/// threads, where glibc's malloc spent a fifth of the daemon's CPU; jemalloc keeps the resident
/// size of a large fleet about where glibc had it (mimalloc, also tried, did not). Set here,
/// not in `main.rs`, so that every program running the daemon (the binary, the black-box
/// tests) allocates the same way and `process_heap_bytes` reports the allocator in use.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod api;
pub mod auth;
pub mod config;
pub mod namespaces;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::db::{self, PoolSettings};
use actors::events::{Alerting, hub::EventHub};
use actors::health::HealthEngine;
use actors::registry::{PluginRegistry, RegistryArgs, SharedRegistry};
use actors::sinks::nats::{NatsConfigError, NatsRelay};
use actors::sinks::webhooks::{InvalidWebhookSettings, WebhookSettings, Webhooks};
use actors::{Catalog, ChangeFeed, Store};
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use config::Config;

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The tenant of the administrator key generated at first start.
pub const BOOTSTRAP_TENANT: &str = "default";

/// Shared by every request handler.
pub struct AppState {
    pub store: Store,
    pub catalog: Catalog,
    /// Built-in and discovered connectors, shared with the health engine.
    pub registry: SharedRegistry,
    pub plugins: PluginRegistry,
    pub auth: auth::Authenticator,
    /// Shared by every connector built outside the health engine (resources, webhooks,
    /// verification before save).
    pub env: connectors::ConnectorEnv,
    /// `None` when `[health] enabled = false`.
    pub health: Option<HealthEngine>,
    /// Committed health events, live (the outbox holds them all).
    pub events: EventHub,
    /// `[events.webhooks]`, for test deliveries made from the API.
    pub webhooks: WebhookSettings,
    /// Longest life of one event stream.
    pub stream_max: Duration,
    /// Turns `true` when the daemon shuts down: event streams end at once instead of holding
    /// the graceful shutdown for its whole grace period.
    pub shutting_down: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The connector of a provider type, if one is registered now.
    pub fn factory(
        &self,
        provider_type: &str,
    ) -> Option<std::sync::Arc<dyn connectors::ConnectorFactory>> {
        self.registry
            .read()
            .expect("registry lock")
            .get(provider_type)
            .cloned()
    }

    /// Builds the live connector of a catalog row.
    ///
    /// # Errors
    /// The connector's error (unknown type, configuration, unsupported).
    pub fn connector_for(
        &self,
        m: &entity::integration::Model,
    ) -> Result<connectors::SharedConnector, connectors::connector::Error> {
        let factory =
            self.factory(&m.provider_type)
                .ok_or(connectors::connector::Error::Unsupported(
                    "no connector is registered for this type",
                ))?;
        factory.build(&actors::health::engine::integration_spec(m), &self.env)
    }
}

/// Longest a `?verify=true` connection test may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(15);

impl AppState {
    /// Tests a configuration against the provider before it is saved (`?verify=true`).
    ///
    /// # Errors
    /// 422 `verification_failed` with the reason when the provider is not reachable with it.
    pub async fn verify(
        &self,
        tenant: &actors::TenantId,
        provider_type: &str,
        config: &serde_json::Map<String, serde_json::Value>,
        auth_ref_uri: Option<&str>,
    ) -> Result<(), api::error::ApiError> {
        use api::error::{ApiError, ERROR_CODE_VERIFICATION_FAILED, Problem};
        let factory = self
            .factory(provider_type)
            .ok_or_else(|| ApiError::invalid("type", "unknown provider type"))?;
        let spec = connectors::IntegrationSpec {
            id: "verify".into(),
            tenant: tenant.to_string(),
            provider_type: provider_type.to_owned(),
            config: config.clone(),
            auth_ref: auth_ref_uri.and_then(|u| u.parse().ok()),
        };
        let connector = factory.build(&spec, &self.env)?;
        let report = tokio::time::timeout(VERIFY_TIMEOUT, connector.test_connection())
            .await
            .unwrap_or_else(|_| {
                connectors::HealthReport::unhealthy(
                    connectors::Reason::Timeout,
                    "no answer in time",
                )
            });
        if report.health == connectors::Health::Unhealthy {
            let reason = report.reason.map_or("unknown", connectors::Reason::as_str);
            let message = report.message.unwrap_or_default();
            return Err(ApiError::from_problem(
                Problem::new(
                    poem::http::StatusCode::UNPROCESSABLE_ENTITY,
                    ERROR_CODE_VERIFICATION_FAILED,
                    format!("the provider could not be reached with this configuration: {reason}: {message}"),
                )
                .with_field("config", format!("{reason}: {message}")),
            ));
        }
        Ok(())
    }
}

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
}

/// A started daemon.
pub struct Running {
    /// The listener of `/metrics`, when it has one of its own (`[telemetry] metrics_listen`).
    metrics: Option<Server>,
    /// The administrator key generated at this start, if one was; the caller shows it once.
    pub generated_admin_key: Option<String>,
    server: Server,
    shutdown_streams: tokio::sync::watch::Sender<bool>,
    catalog: Catalog,
    catalog_handle: JoinHandle<()>,
    health: Option<HealthEngine>,
    /// `None` when `[events.webhooks] enabled = false`.
    webhooks: Option<Webhooks>,
    plugins: PluginRegistry,
    plugins_handle: JoinHandle<()>,
    /// The NATS JetStream publisher, when `[events.nats] url` is set.
    nats: Option<NatsRelay>,
}

impl Running {
    /// Where the HTTP server listens (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Where `/metrics` is served when it has a listener of its own (the real port when
    /// configured with port 0); `None` when it is served at [`Running::local_addr`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Stops accepting connections, lets in-flight requests finish, then stops the actors.
    ///
    /// # Errors
    /// When the server failed while running.
    pub async fn shutdown(self) -> Result<(), Error> {
        let metrics = self.metrics.map(Server::stop);
        let main = self.server.stop();
        self.shutdown_streams.send_replace(true);
        let served = main.await;
        let metrics_served = match metrics {
            Some(stopped) => stopped.await,
            None => Ok(()),
        };
        self.catalog.stop();
        let _ = self.catalog_handle.await;
        if let Some(health) = &self.health {
            health.stop().await;
        }
        if let Some(webhooks) = self.webhooks {
            webhooks.stop().await;
        }
        if let Some(nats) = self.nats {
            nats.stop().await;
        }
        self.plugins.stop();
        let _ = self.plugins_handle.await;
        served.and(metrics_served).map_err(Error::Serve)
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    ///
    /// # Errors
    /// See [`Running::shutdown`].
    pub async fn serve_until(self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        signal.await;
        tracing::info!(message = "Shutting down.");
        self.shutdown().await
    }
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

/// Starts the daemon: database, migrations, actors, and the HTTP server.
///
/// # Errors
/// See [`Error`].
pub async fn start(config: Config) -> Result<Running, Error> {
    // Before any instrument exists: instruments bind to the provider installed first.
    let metrics = telemetry::metrics(&config.telemetry);
    let metrics_token = match &config.telemetry.metrics_bearer_token_file {
        Some(path) => Some(
            api::metrics::MetricsToken::from_file(path).map_err(|source| Error::MetricsToken {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let metrics = api::metrics::endpoint(metrics, metrics_token);
    // Refused before anything starts; the relay itself starts next to the health engine.
    let nats_config = config.events.nats.relay_config()?;
    let db = db::connect(&config.database.url, &pool_settings(&config))
        .await
        .map_err(Error::Connect)?;
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
    let generated_admin_key = bootstrap_admin_key(&config, &store).await?;
    let stored = store
        .api_keys()
        .await
        .map_err(Error::Keys)?
        .into_iter()
        .map(|k| {
            let scopes: Vec<String> = serde_json::from_value(k.scopes).unwrap_or_default();
            auth::api_key::StoredKey::from_parts(&k.id, &k.tenant_id, &scopes, &k.key_sha256)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let authenticator = auth::Authenticator::new(&config.auth, stored, http)?;

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
        settings: config.plugins.settings().map_err(Error::Plugins)?,
        changes: changes.clone(),
    })
    .await?;
    let (catalog, catalog_handle) =
        Catalog::start(store.clone(), config.catalog.workers, changes.clone()).await?;
    let env = connectors::ConnectorEnv::new(&config.connectors).map_err(Error::Connectors)?;
    tokio::spawn(namespaces::report(store.clone(), env.secrets.clone()));
    let hub = EventHub::default();
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
                    hub: hub.clone(),
                    clock: Default::default(),
                },
            )
            .await?,
        )
    } else {
        None
    };
    let nats = nats_config
        .map(|relay| NatsRelay::start(store.system(), hub.latest(), relay, env.secrets.clone()));
    let webhooks = Webhooks::start(&store, &env, &hub, &changes, &config.events.webhooks)?;
    let (shutdown_streams, shutting_down) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        store,
        catalog: catalog.clone(),
        registry,
        plugins: plugins.clone(),
        auth: authenticator,
        env,
        health: health.clone(),
        events: hub,
        webhooks: config.events.webhooks.clone(),
        stream_max: Duration::from_secs(config.events.stream_max_seconds.max(1)),
        shutting_down,
    });
    spawn_housekeeping(Arc::downgrade(&state));

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
        webhooks,
        plugins,
        plugins_handle,
        nats,
    })
}

/// One HTTP listener and the task serving it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

/// A bound listener, not yet served.
struct Bound {
    acceptor: poem::listener::TcpAcceptor,
    addr: SocketAddr,
}

impl Bound {
    async fn bind(listen: SocketAddr) -> Result<Self, Error> {
        let acceptor = TcpListener::bind(listen)
            .into_acceptor()
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(listen);
        Ok(Self { acceptor, addr })
    }

    /// Serves `app` here until stopped.
    fn serve(self, app: impl poem::Endpoint + 'static) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            poem::Server::new_with_acceptor(self.acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(SHUTDOWN_GRACE),
                )
                .await
        });
        Server {
            addr: self.addr,
            stop,
            task,
        }
    }
}

impl Server {
    /// Stops accepting connections; the returned future ends when in-flight requests have.
    fn stop(self) -> impl Future<Output = Result<(), std::io::Error>> {
        let _ = self.stop.send(());
        async move {
            match self.task.await {
                Ok(result) => result,
                Err(join) => Err(std::io::Error::other(join)),
            }
        }
    }
}

/// Starts the daemon and serves until `shutdown` completes. A generated administrator key is
/// printed once to standard error (never to the log).
///
/// # Errors
/// See [`start`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let running = start(config).await?;
    if let Some(key) = &running.generated_admin_key {
        eprintln!(
            "\nNo API keys were configured, so an administrator key was generated for tenant \
             `{BOOTSTRAP_TENANT}`.\nIt is shown only this once; only its hash is stored:\n\n    {key}\n"
        );
    }
    running.serve_until(shutdown).await
}

/// With no API key configured or stored and no JWT authority, generates an administrator key
/// for the `default` tenant and stores its digest.
async fn bootstrap_admin_key(config: &Config, store: &Store) -> Result<Option<String>, Error> {
    if !config.auth.api_keys.is_empty() || config.auth.jwt.is_some() {
        return Ok(None);
    }
    if !store.api_keys().await.map_err(Error::Keys)?.is_empty() {
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

/// Installs the process-wide TLS crypto provider (ring). Call once, first thing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
