//! Configuration: one TOML file plus environment overrides, with defaults that run on a fresh
//! clone (embedded SQLite in the working directory, loopback listener).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Path of the configuration file, when `--config` is not given.
pub const ENV_CONFIG: &str = "STELLA_CONFIG";
/// Overrides `database.url`.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// Overrides `http.listen`.
pub const ENV_HTTP_LISTEN: &str = "STELLA_HTTP_LISTEN";
/// Overrides `log.format` (`text` or `json`).
pub const ENV_LOG_FORMAT: &str = "STELLA_LOG_FORMAT";
/// Overrides `log.filter` (a `tracing` env-filter directive).
pub const ENV_LOG_FILTER: &str = "STELLA_LOG";
/// Overrides `telemetry.otlp_endpoint` (the standard OpenTelemetry variable).
pub const ENV_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The daemon's whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub health: actors::health::HealthSettings,
    /// Outbound HTTP discipline and secret resolution for every connector.
    #[serde(default)]
    pub connectors: connectors::Settings,
    /// External connector plugins: where to discover them, and the limits of their processes.
    #[serde(default)]
    pub plugins: connectors::external::PluginsConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Health events: noise control and the delivery channels.
    #[serde(default)]
    pub events: EventsConfig,
    /// Several replicas over one PostgreSQL database.
    #[serde(default)]
    pub cluster: actors::cluster::ClusterSettings,
}

/// The `[events]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Reminders, flap detection and credential-expiry warnings.
    #[serde(default)]
    pub alerts: actors::events::alerts::AlertSettings,
    /// Webhook delivery: concurrency, timeouts, retries and dead-lettering.
    #[serde(default)]
    pub webhooks: actors::sinks::webhooks::WebhookSettings,
    /// Longest life of one `GET /api/v1/events` stream; the client reconnects with
    /// `Last-Event-ID` and loses nothing. Bounds how long a vanished client holds resources
    /// and lets load balancers rebalance.
    #[serde(default = "default_stream_max_seconds")]
    pub stream_max_seconds: u64,
    /// The NATS JetStream publisher; off unless `url` is set.
    #[serde(default)]
    pub nats: actors::sinks::nats::NatsSettings,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            alerts: Default::default(),
            webhooks: Default::default(),
            stream_max_seconds: default_stream_max_seconds(),
            nats: Default::default(),
        }
    }
}

const fn default_stream_max_seconds() -> u64 {
    3600
}

/// Metrics and traces: where `/metrics` (Prometheus text) is served and who may read it, and
/// OTLP export.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector base URL (such as `http://127.0.0.1:4318`); metrics and traces are
    /// exported there when set. Also `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Serve `/metrics` on a listener of its own at this address (such as `127.0.0.1:9464`)
    /// and not on the main one, so that the API can face a network the metrics should not:
    /// their labels name every tenant. Port 0 picks a free port. By default `/metrics` is on
    /// the main listener.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A file holding a bearer token that `/metrics` then requires (`Authorization: Bearer
    /// <token>`, 401 otherwise), on whichever listener serves it. Read once at start-up. By
    /// default `/metrics` needs no token.
    #[serde(default)]
    pub metrics_bearer_token_file: Option<PathBuf>,
}

impl TelemetryConfig {
    /// Whether `/metrics` is open to anyone beyond this host: served without a token on a
    /// listener that is not on loopback (worth a warning at start-up).
    pub fn metrics_exposed(&self, http: &HttpConfig) -> bool {
        let listen = self.metrics_listen.unwrap_or(http.listen);
        self.metrics_bearer_token_file.is_none() && !listen.ip().is_loopback()
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// The externally visible base URL, used in `Location` headers and the Swagger UI; by
    /// default derived from the request.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

const fn default_body_limit() -> usize {
    256 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit_bytes: default_body_limit(),
            public_url: None,
        }
    }
}

/// The catalog database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (embedded, the default) or `postgres://user@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_database_url() -> String {
    "sqlite://stella-integrations.db?mode=rwc".into()
}

const fn default_max_connections() -> u32 {
    16
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            max_connections: default_max_connections(),
        }
    }
}

/// Authentication: API keys, JWTs from an OAuth authority, and per-token rate limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys, each bound to one tenant. Only their SHA-256 is configured.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Accept JWTs issued by this authority.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// One configured API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for the key; it is the audit actor (`apikey:<id>`).
    pub id: String,
    pub tenant: String,
    /// Scopes, such as `integrations:read`.
    pub scopes: Vec<String>,
    /// Lower-case hex SHA-256 of the key (`stella-integrations hash-key` prints it).
    pub sha256: String,
}

/// Verification of JWTs from an OAuth authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (any of them).
    pub audiences: Vec<String>,
    /// Where the authority publishes its signing keys.
    pub jwks_url: String,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_seconds: u64,
    /// Claims holding the tenant, tried in order.
    #[serde(default = "default_tenant_claims")]
    pub tenant_claims: Vec<String>,
    /// Claim holding the scopes: a space-separated string or an array.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Allowed clock skew for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

const fn default_jwks_ttl() -> u64 {
    300
}

fn default_tenant_claims() -> Vec<String> {
    vec!["tid".into(), "tenant_id".into()]
}

fn default_scope_claim() -> String {
    "scope".into()
}

const fn default_leeway() -> u64 {
    30
}

/// Requests per token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second per token; 0 disables rate limiting.
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    /// Burst above the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

const fn default_per_second() -> u32 {
    50
}

const fn default_burst() -> u32 {
    100
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

/// The catalog actor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Workers of the catalog factory; writes of one tenant always use the same worker.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

const fn default_workers() -> usize {
    8
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            workers: default_workers(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A `tracing` env-filter directive.
    #[serde(default = "default_log_filter")]
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

const fn default_log_format() -> LogFormat {
    LogFormat::Text
}

fn default_log_filter() -> String {
    "info,sqlx=warn,sea_orm=warn".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            filter: default_log_filter(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{name}: {message}")]
    Env { name: &'static str, message: String },
}

impl Config {
    /// Parses a configuration file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid configuration.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Loads the file (if any) and applies environment overrides.
    ///
    /// # Errors
    /// See [`Config::from_file`]; also an override that does not parse.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os(ENV_CONFIG).map(PathBuf::from);
        let mut config = match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies overrides from `get` (the environment, in production).
    ///
    /// # Errors
    /// An override that does not parse.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(url) = get(ENV_DATABASE_URL) {
            self.database.url = url;
        }
        if let Some(listen) = get(ENV_HTTP_LISTEN) {
            self.http.listen = listen.parse().map_err(|e| ConfigError::Env {
                name: ENV_HTTP_LISTEN,
                message: format!("{e}"),
            })?;
        }
        if let Some(format) = get(ENV_LOG_FORMAT) {
            self.log.format = match format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: ENV_LOG_FORMAT,
                        message: "expected text or json".into(),
                    });
                }
            };
        }
        if let Some(filter) = get(ENV_LOG_FILTER) {
            self.log.filter = filter;
        }
        if let Some(endpoint) = get(ENV_OTLP_ENDPOINT).filter(|e| !e.is_empty()) {
            self.telemetry.otlp_endpoint = Some(endpoint);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config.toml");
        let config = Config::from_file(&path).expect("examples/config.toml is valid");
        assert_eq!(config.auth.api_keys.len(), 1);
        assert!(config.auth.jwt.is_some());
        assert_eq!(config.health.interval_seconds, 300);
        config.health.schedule().expect("valid health settings");
        config
            .events
            .webhooks
            .validate()
            .expect("valid webhook settings");
        assert_eq!(config.events.webhooks.dead_letter_after_seconds, 86_400);
        // The example leaves the publisher off; its other settings must still be usable.
        let mut nats = config.events.nats.clone();
        nats.url
            .get_or_insert_with(|| "nats://127.0.0.1:4222".into());
        let relay = nats.relay_config().expect("valid [events.nats] settings");
        assert!(relay.is_some());
        // The example's tenant namespaces are valid and say what their comments say.
        let namespaces = connectors::secrets::Namespaces::new(&config.connectors.secrets)
            .expect("valid tenant namespaces");
        assert_eq!(namespaces.vault_folder("acme"), ["tenants", "acme"]);
        assert!(namespaces.vault_auth("acme").is_some());
        // The /metrics settings it shows commented out are valid once uncommented.
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented = text
            .replace("# metrics_listen", "metrics_listen")
            .replace("# metrics_bearer_token_file", "metrics_bearer_token_file");
        let config: Config = toml::from_str(&uncommented).expect("valid [telemetry] settings");
        assert_eq!(
            config.telemetry.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(config.telemetry.metrics_bearer_token_file.is_some());
    }

    /// A configuration copied from the example must not accept a key anyone could guess.
    #[test]
    fn example_api_keys_are_not_guessable() {
        use sha2::{Digest, Sha256};
        const COMMON: &[&str] = &[
            "123456",
            "1234567",
            "12345678",
            "123456789",
            "1234567890",
            "654321",
            "111111",
            "000000",
            "password",
            "Password",
            "password1",
            "passw0rd",
            "admin",
            "administrator",
            "root",
            "secret",
            "changeme",
            "change-me",
            "test",
            "testing",
            "example",
            "default",
            "qwerty",
            "letmein",
            "welcome",
            "abc123",
            "iloveyou",
            "key",
            "apikey",
            "api-key",
            "token",
            "stella",
            "stellaops",
            "acme",
            "ci-pipeline",
        ];
        // Every string of at most four digits, the empty one included.
        let digits = (1..=4).flat_map(|len| {
            (0..10u32.pow(len)).map(move |n| format!("{n:0len$}", len = len as usize))
        });
        let guesses: std::collections::HashSet<String> = COMMON
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(String::new()))
            .chain(digits)
            .map(|guess| hex::encode(Sha256::digest(guess.as_bytes())))
            .collect();
        assert_eq!(guesses.len(), COMMON.len() + 1 + 11_110, "distinct guesses");
        // The digest the example once carried, of `123456`.
        assert!(
            guesses.contains("8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92")
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config.toml");
        let config = Config::from_file(&path).expect("examples/config.toml is valid");
        assert!(!config.auth.api_keys.is_empty());
        for key in &config.auth.api_keys {
            assert!(
                !guesses.contains(&key.sha256.to_ascii_lowercase()),
                "the example key {} is the SHA-256 of a common secret",
                key.id
            );
        }
    }

    #[test]
    fn defaults_run_on_a_fresh_clone() {
        let config: Config = toml::from_str("").unwrap();
        assert!(config.database.url.starts_with("sqlite://"));
        assert!(config.http.listen.ip().is_loopback());
    }

    #[test]
    fn open_metrics_are_noticed_beyond_loopback() {
        let exposed = |text: &str| {
            let config: Config = toml::from_str(text).unwrap();
            config.telemetry.metrics_exposed(&config.http)
        };
        assert!(!exposed(""));
        assert!(exposed("[http]\nlisten = \"0.0.0.0:8080\""));
        assert!(exposed("[http]\nlisten = \"192.0.2.1:8080\""));
        assert!(!exposed(
            "[http]\nlisten = \"0.0.0.0:8080\"\n[telemetry]\nmetrics_listen = \"127.0.0.1:9464\""
        ));
        assert!(exposed("[telemetry]\nmetrics_listen = \"[::]:9464\""));
        assert!(!exposed(
            "[http]\nlisten = \"0.0.0.0:8080\"\n[telemetry]\nmetrics_bearer_token_file = \"/run/t\""
        ));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[http]\nlisten_on = \"x\"").is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                ENV_DATABASE_URL => Some("postgres://u@127.0.0.1/db".into()),
                ENV_HTTP_LISTEN => Some("127.0.0.1:0".into()),
                ENV_LOG_FORMAT => Some("json".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.database.url, "postgres://u@127.0.0.1/db");
        assert_eq!(config.http.listen.port(), 0);
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(config.apply_env(|_| Some("nonsense".into())).is_err());
    }
}
