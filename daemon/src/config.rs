//! Configuration: one TOML file plus environment overrides, with defaults that run on a fresh
//! clone (embedded SQLite in the working directory, loopback listener).
//!
//! # Environment overrides
//! Every key can be set from the environment as `STELLA__<SECTION>__<KEY>` ([`ENV_PREFIX`],
//! segments separated by [`ENV_SEPARATOR`], matched case-insensitively and lower-cased), so
//! `STELLA__HEALTH__INTERVAL_SECONDS=60` sets `[health] interval_seconds`. The value is read
//! as a TOML value (numbers, booleans, arrays and inline tables work) and as a plain string
//! when it is not one, or when the key wants a string. The overrides are laid over the file
//! before it is deserialised, so `deny_unknown_fields` refuses a misspelt variable as it
//! refuses a misspelt key, and the error names the variable (never its value: values may be
//! secrets). The older variables (`DATABASE_URL`, `STELLA_HTTP_LISTEN`, `STELLA_LOG`,
//! `STELLA_LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`) remain as shortcuts, applied last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
/// Prefix of the general convention: `STELLA__<SECTION>__<KEY>` overrides any key.
pub const ENV_PREFIX: &str = "STELLA__";
/// Separates the segments of a key's path in a variable name.
pub const ENV_SEPARATOR: &str = "__";

/// The daemon's whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// One incident for a shared outage: correlation thresholds, and the egress self-check.
    #[serde(default)]
    pub incidents: actors::events::incidents::IncidentSettings,
}

/// The `[events]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (any of them).
    pub audiences: Vec<String>,
    /// Where the authority publishes its signing keys. By default it is discovered from the
    /// issuer (OpenID Connect Discovery): the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`, whose `issuer` must equal `issuer`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_seconds: u64,
    /// Shortest time between two fetches of the keys caused by tokens signed with an unknown
    /// `kid` (a key the authority rotated in): tokens with made-up `kid`s cannot make the hub
    /// hammer the authority.
    #[serde(default = "default_jwks_refetch_floor")]
    pub jwks_refetch_floor_seconds: u64,
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

const fn default_jwks_refetch_floor() -> u64 {
    10
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A `tracing` env-filter directive.
    #[serde(default = "default_log_filter")]
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
    /// A `STELLA__…` variable that does not fit the configuration. The message never holds
    /// the variable's value.
    #[error("environment variable {name}: {message}")]
    Override { name: String, message: String },
    /// Several `STELLA__…` variables that do not fit together.
    #[error("environment variables {names}: {message}")]
    Overrides { names: String, message: String },
}

impl Config {
    /// Parses a configuration file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid configuration.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read(path)?)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Loads the file (if any) and applies environment overrides.
    ///
    /// # Errors
    /// See [`Config::load_from`].
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, &environment()?)
    }

    /// Loads the file (`path`, or the one `STELLA_CONFIG` names, if any), lays the `STELLA__…`
    /// variables of `vars` over it, deserialises the result, then applies the shortcuts.
    ///
    /// # Errors
    /// See [`Config::from_file`]; also an override that does not parse or names no key.
    pub fn load_from(path: Option<&Path>, vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        };
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| get(ENV_CONFIG).map(PathBuf::from));
        let overrides = overrides(vars)?;
        let (mut config, table) = match &path {
            Some(path) => {
                // Deserialised straight from the text first, so that an error in the file
                // points at its line.
                let text = read(path)?;
                let config = Self::parse(path, &text)?;
                let table =
                    toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Parse {
                        path: path.clone(),
                        source: Box::new(source),
                    })?;
                (config, table)
            }
            None => (Self::default(), toml::Table::new()),
        };
        if !overrides.is_empty() {
            config = apply_overrides(table, &overrides)?;
        }
        config.apply_env(get)?;
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

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Stands in for a redacted value.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// The effective settings as TOML, with every secret replaced: the password of any URL
    /// (the database's, NATS's) by `REDACTED`, and by [`REDACTED`] any value of a key named
    /// `token`, `*_token`, `credentials`, or holding `password` or `secret`, unless it is an
    /// AuthRef (a reference, not a secret). API key digests stay: they are not secrets.
    ///
    /// # Errors
    /// When the settings cannot be written as TOML (not expected).
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        redact(None, &mut value);
        toml::to_string_pretty(&value)
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "token"
        || key.ends_with("_token")
        || key == "credentials"
        || key.contains("password")
        || key.contains("secret")
}

fn redact(key: Option<&str>, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                redact(Some(key), value);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                redact(key, item);
            }
        }
        toml::Value::String(text) => {
            let is_reference = text.parse::<connectors::authref::AuthRef>().is_ok();
            if key.is_some_and(is_secret_key) && !is_reference {
                *text = REDACTED.to_owned();
            } else {
                // Comma-separated, for a list of NATS servers.
                let parts: Vec<String> = text.split(',').map(redact_url_password).collect();
                *text = parts.join(",");
            }
        }
        _ => {}
    }
}

/// `text` with the password of its URL (if it is one with a password) redacted.
fn redact_url_password(text: &str) -> String {
    match url::Url::parse(text.trim()) {
        Ok(mut url) if url.password().is_some() => {
            // Written as is in a URL (`<` and `>` would be percent-encoded).
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// The process environment as name/value pairs. Variables that are not Unicode are skipped,
/// except a `STELLA__…` one, which is refused.
fn environment() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) if is_override(&name) => {
                return Err(ConfigError::Override {
                    name,
                    message: "the value is not valid UTF-8".into(),
                });
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

fn is_override(name: &str) -> bool {
    name.get(..ENV_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(ENV_PREFIX))
}

/// One `STELLA__…` variable: the key's path and the value as TOML.
struct Override {
    name: String,
    path: Vec<String>,
    /// The value as written, for a key that wants a string.
    raw: String,
    /// The value read as a TOML value, or the raw string when it is not one.
    value: toml::Value,
}

/// The `STELLA__…` variables of `vars`, sorted by name so that a whole section comes before
/// the keys inside it.
fn overrides(vars: &[(String, String)]) -> Result<Vec<Override>, ConfigError> {
    let mut overrides = Vec::new();
    for (name, raw) in vars.iter().filter(|(name, _)| is_override(name)) {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Override {
                name: name.clone(),
                message: format!(
                    "expected {ENV_PREFIX}<SECTION>{ENV_SEPARATOR}<KEY>, with no empty segment"
                ),
            });
        }
        overrides.push(Override {
            name: name.clone(),
            path,
            raw: raw.clone(),
            value: toml_value(raw),
        });
    }
    overrides.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(overrides)
}

/// `raw` as a TOML value (`60`, `true`, `["a", "b"]`, `{ a = 1 }`), or as a string.
fn toml_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Lays the overrides over `base` and deserialises the result. A value read as a number, a
/// boolean or an array is tried again as a string when the key wants one (a replica id of
/// `12`). On failure, the variable to blame is the one without which the rest deserialises.
fn apply_overrides(base: toml::Table, overrides: &[Override]) -> Result<Config, ConfigError> {
    let merged = |values: &[toml::Value], skip: Option<usize>| {
        let mut table = base.clone();
        for (i, o) in overrides.iter().enumerate() {
            if Some(i) != skip {
                set(&mut table, o, values[i].clone())?;
            }
        }
        Ok::<_, ConfigError>(table)
    };
    let mut values: Vec<toml::Value> = overrides.iter().map(|o| o.value.clone()).collect();
    let mut first_errors: Vec<Option<String>> = vec![None; overrides.len()];
    loop {
        let error = match toml::Value::Table(merged(&values, None)?).try_into::<Config>() {
            Ok(config) => return Ok(config),
            Err(error) => redact_quoted(error.message()),
        };
        let culprit = (0..overrides.len()).find(|&i| {
            merged(&values, Some(i))
                .is_ok_and(|table| toml::Value::Table(table).try_into::<Config>().is_ok())
        });
        match culprit {
            Some(i) if !values[i].is_str() => {
                first_errors[i] = Some(error);
                values[i] = toml::Value::String(overrides[i].raw.clone());
            }
            Some(i) => {
                return Err(ConfigError::Override {
                    name: overrides[i].name.clone(),
                    message: first_errors[i].take().unwrap_or(error),
                });
            }
            None => {
                let names: Vec<&str> = overrides.iter().map(|o| o.name.as_str()).collect();
                return Err(ConfigError::Overrides {
                    names: names.join(", "),
                    message: error,
                });
            }
        }
    }
}

/// Sets the key `o` names in `table`, creating the tables on its way.
fn set(table: &mut toml::Table, o: &Override, value: toml::Value) -> Result<(), ConfigError> {
    let (last, sections) = o.path.split_last().expect("a path has a segment");
    let mut table = table;
    for (depth, section) in sections.iter().enumerate() {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Override {
            name: o.name.clone(),
            message: format!("`{}` is not a section", o.path[..=depth].join(".")),
        })?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// `message` with every double-quoted part (how serde quotes a string value it refuses)
/// replaced, so that a secret given to the wrong key is not echoed. Names of keys stay: serde
/// quotes those with backticks.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            out.push_str("…\"");
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => break,
                    _ => escaped = false,
                }
            }
        }
    }
    out
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

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(None, &vars(pairs))
    }

    #[test]
    fn every_key_is_overridable_by_the_convention() {
        let config = load(&[
            ("STELLA__HEALTH__INTERVAL_SECONDS", "60"),
            ("STELLA__HEALTH__JITTER", "0.25"),
            ("STELLA__CLUSTER__ENABLED", "true"),
            ("STELLA__CLUSTER__REPLICA_ID", "12"),
            (
                "STELLA__CONNECTORS__OUTBOUND__ALLOW_PRIVATE_NETWORKS",
                r#"["10.0.0.0/8", "192.168.0.0/16"]"#,
            ),
            ("stella__log__filter", "debug,sqlx=warn"),
            ("Stella__Database__Url", "postgres://u:pw@db/x?sslmode=require"),
            (
                "STELLA__AUTH__API_KEYS",
                r#"[{ id = "ci", tenant = "acme", scopes = ["integrations:read"], sha256 = "00" }]"#,
            ),
            // The keys of one section, given one by one.
            ("STELLA__AUTH__JWT__ISSUER", "https://authority.example.com"),
            ("STELLA__AUTH__JWT__AUDIENCES", r#"["stella"]"#),
            ("STELLA__AUTH__JWT__JWKS_URL", "https://authority.example.com/jwks"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(config.health.interval_seconds, 60);
        assert!((config.health.jitter - 0.25).abs() < f64::EPSILON);
        assert!(config.cluster.enabled);
        assert_eq!(config.cluster.replica_id.as_deref(), Some("12"));
        assert_eq!(
            config.connectors.outbound.allow_private_networks,
            ["10.0.0.0/8", "192.168.0.0/16"]
        );
        assert_eq!(config.log.filter, "debug,sqlx=warn");
        assert_eq!(config.database.url, "postgres://u:pw@db/x?sslmode=require");
        assert_eq!(config.auth.api_keys[0].tenant, "acme");
        let jwt = config.auth.jwt.unwrap();
        assert_eq!(jwt.audiences, ["stella"]);
        assert_eq!(jwt.leeway_seconds, 30, "defaults still apply");
    }

    #[test]
    fn the_convention_overrides_the_file_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[health]\ninterval_seconds = 100\ntimeout_seconds = 7\n",
        )
        .unwrap();
        let config = Config::load_from(
            None,
            &vars(&[
                (ENV_CONFIG, path.to_str().unwrap()),
                ("STELLA__HEALTH__INTERVAL_SECONDS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(config.health.interval_seconds, 60);
        assert_eq!(config.health.timeout_seconds, 7);
        // An error in the file itself still points at the file.
        std::fs::write(&path, "[health]\nintervall = 1\n").unwrap();
        let error = Config::load_from(Some(&path), &[]).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
    }

    #[test]
    fn a_misspelt_variable_is_refused_by_name() {
        let error = load(&[
            ("STELLA__HEALTH__INTERVAL_SECONDS", "60"),
            ("STELLA__HEALTH__INTERVAL_SECONDZ", "60"),
        ])
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("STELLA__HEALTH__INTERVAL_SECONDZ") && text.contains("interval_secondz"),
            "{text}"
        );
        assert!(!text.contains("STELLA__HEALTH__INTERVAL_SECONDS"), "{text}");
        let error = load(&[("STELLA__NOPE", "1")]).unwrap_err();
        assert!(error.to_string().contains("STELLA__NOPE"), "{error}");
        let error = load(&[("STELLA__HEALTH__", "1")]).unwrap_err();
        assert!(error.to_string().contains("empty segment"), "{error}");
        let error = load(&[
            ("STELLA__HEALTH", "1"),
            ("STELLA__HEALTH__INTERVAL_SECONDS", "60"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("not a section"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_without_being_echoed() {
        let error = load(&[("STELLA__HEALTH__INTERVAL_SECONDS", "hunter2-secret")]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("STELLA__HEALTH__INTERVAL_SECONDS"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{error:?}").contains("hunter2"));
        let error = load(&[("STELLA__CLUSTER__ENABLED", "yes")]).unwrap_err();
        assert!(
            error.to_string().contains("STELLA__CLUSTER__ENABLED"),
            "{error}"
        );
        let error = load(&[("STELLA__HTTP__LISTEN", "\"p@ss\"word\"")]).unwrap_err();
        assert!(!error.to_string().contains("p@ss"), "{error}");
        assert_eq!(
            redact_quoted(r#"invalid type: string "a\"b", expected `u64`"#),
            r#"invalid type: string "…", expected `u64`"#
        );
    }

    #[test]
    fn the_five_shortcuts_still_work_and_win() {
        let config = load(&[
            (ENV_DATABASE_URL, "postgres://u@127.0.0.1/db"),
            ("STELLA__DATABASE__URL", "postgres://other@127.0.0.1/db"),
            (ENV_HTTP_LISTEN, "127.0.0.1:0"),
            (ENV_LOG_FORMAT, "json"),
            (ENV_LOG_FILTER, "warn"),
            (ENV_OTLP_ENDPOINT, "http://127.0.0.1:4318"),
        ])
        .unwrap();
        assert_eq!(config.database.url, "postgres://u@127.0.0.1/db");
        assert_eq!(config.http.listen.port(), 0);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.filter, "warn");
        assert_eq!(
            config.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[catalog]\nworkers = 3\n").unwrap();
        let config = load(&[(ENV_CONFIG, path.to_str().unwrap())]).unwrap();
        assert_eq!(config.catalog.workers, 3);
        assert!(load(&[(ENV_LOG_FORMAT, "yaml")]).is_err());
    }

    #[test]
    fn the_effective_settings_print_without_secrets() {
        let mut config = load(&[
            ("DATABASE_URL", "postgres://app:s3cr3t-pw@db:5432/x"),
            (
                "STELLA__EVENTS__NATS__URL",
                "nats://a:4222,tls://u:natspw@b:4222",
            ),
            (
                "STELLA__EVENTS__NATS__CREDENTIALS",
                "authref://vault/nats/hub#token",
            ),
        ])
        .unwrap();
        config.auth.api_keys.push(ApiKeyConfig {
            id: "ci".into(),
            tenant: "acme".into(),
            scopes: vec!["integrations:read".into()],
            sha256: "ab".repeat(32),
        });
        config.connectors.secrets.tenants.insert(
            "acme".into(),
            connectors::settings::TenantSecretsSettings {
                vault_auth: Some(connectors::settings::VaultAuth::Approle {
                    mount: "approle".into(),
                    role_id: "r".into(),
                    secret_id: "authref://file/operator/acme".parse().unwrap(),
                }),
                ..Default::default()
            },
        );
        let text = config.redacted_toml().unwrap();
        assert!(
            !text.contains("s3cr3t-pw") && !text.contains("natspw"),
            "{text}"
        );
        assert!(text.contains("postgres://app:REDACTED@db:5432/x"), "{text}");
        assert!(text.contains("authref://vault/nats/hub#token"), "{text}");
        assert!(text.contains("authref://file/operator/acme"), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "digests stay: {text}");
        // What is printed is a configuration that loads.
        let _: Config = toml::from_str(&text).unwrap();
        // A literal where a reference belongs is redacted.
        let mut value = toml::Value::try_from(&config).unwrap();
        value["events"]["nats"]
            .as_table_mut()
            .unwrap()
            .insert("credentials".into(), "plain-nats-token".into());
        redact(None, &mut value);
        assert!(!value.to_string().contains("plain-nats-token"));
    }
}
