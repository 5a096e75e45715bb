//! [`ExternalPlugin`]: a discovered plugin as a [`ConnectorFactory`], and the
//! [`ExternalConnector`] it builds per integration.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

use super::discovery::DiscoveredPlugin;
use super::manifest;
use super::protocol::{
    self, Credential, ListResourcesResult, Resource, ValidateResult, method, sanitize,
};
use super::supervisor::Supervisor;
use super::{CallError, PluginSettings};
use crate::config::{self, ConfigError};
use crate::connector::{
    Connector, ConnectorEnv, Error, IntegrationSpec, ResourcePage, SharedConnector,
};
use crate::health::{HealthReport, Reason};
use crate::provider::{Capability, ConnectorFactory};
use crate::secrets::SecretResolver;

/// Where an external connector gets the credential of each call. The daemon's
/// [`SecretResolver`] (from [`ConnectorEnv`]) is the one used unless
/// [`ExternalPlugin::with_credentials`] sets another.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// The credential of `spec`'s integration, resolved now; `Ok(None)` when it has none.
    ///
    /// # Errors
    /// A safe message (never the secret) when the secret cannot be read.
    async fn credential(&self, spec: &IntegrationSpec) -> Result<Option<Credential>, String>;

    /// The plugin reported `auth_failed`: forget any cached copy (it may have been rotated).
    async fn invalidate(&self, spec: &IntegrationSpec) {
        let _ = spec;
    }
}

/// Sends no credential.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

#[async_trait::async_trait]
impl CredentialSource for NoCredentials {
    async fn credential(&self, _spec: &IntegrationSpec) -> Result<Option<Credential>, String> {
        Ok(None)
    }
}

#[async_trait::async_trait]
impl CredentialSource for SecretResolver {
    async fn credential(&self, spec: &IntegrationSpec) -> Result<Option<Credential>, String> {
        let Some(credential) = spec.credential() else {
            return Ok(None);
        };
        let resolved = self.resolve(&credential).await.map_err(|e| e.to_string())?;
        // The plugin sends the credential where its configuration points: a bound secret goes
        // only to a plugin whose `baseUrl` (or `url`) is one of the secret's hosts.
        if resolved.binding().is_bound() {
            let target = ["baseUrl", "url"]
                .iter()
                .find_map(|k| spec.config.get(*k)?.as_str())
                .and_then(|u| url::Url::parse(u).ok())
                .ok_or_else(|| {
                    format!(
                        "{credential}: the secret is bound to {} and the configuration names \
                         no baseUrl to check",
                        resolved.binding().describe()
                    )
                })?;
            resolved
                .check_url(&credential, &target)
                .map_err(|e| e.to_string())?;
        }
        Ok(Some(Credential::new(resolved.secret().expose())))
    }

    async fn invalidate(&self, spec: &IntegrationSpec) {
        if let Some(credential) = spec.credential() {
            SecretResolver::invalidate(self, &credential).await;
        }
    }
}

/// `ConnectorFactory` and `Resource` hand out `&'static str`s; a plugin's names are known only
/// at run time. Each distinct name is leaked once and reused, so rediscovery does not grow
/// memory; at most [`MAX_INTERNED`] names are kept, later ones map to `fallback`.
fn intern(s: &str, fallback: &'static str) -> &'static str {
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(name) = names.get(s) {
        return name;
    }
    if names.len() >= MAX_INTERNED {
        return fallback;
    }
    let name: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(name);
    name
}

/// Most distinct run-time names kept (provider types, display names, resource kinds).
const MAX_INTERNED: usize = 4096;

fn capabilities(list: &[Capability]) -> &'static [Capability] {
    // The manifest check admits only these two sets.
    if list.contains(&Capability::ListResources) {
        &[Capability::HealthCheck, Capability::ListResources]
    } else {
        &[Capability::HealthCheck]
    }
}

fn failed(e: &CallError, credential: Option<&Credential>) -> HealthReport {
    HealthReport::unhealthy(
        Reason::ConnectorFailed,
        sanitize(&e.to_string(), credential),
    )
}

/// A discovered plugin, registered like a built-in connector. Its process is started on the
/// first call and shared by every integration of its type; dropping the last clone of the
/// plugin (and of its connectors) stops the process.
#[derive(Clone)]
pub struct ExternalPlugin {
    plugin: Arc<DiscoveredPlugin>,
    provider_type: &'static str,
    display_name: &'static str,
    supervisor: Arc<Supervisor>,
    credentials: Option<Arc<dyn CredentialSource>>,
}

impl std::fmt::Debug for ExternalPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalPlugin")
            .field("id", &self.plugin.manifest.id)
            .field("provider_type", &self.provider_type)
            .field("dir", &self.plugin.dir)
            .finish_non_exhaustive()
    }
}

impl ExternalPlugin {
    /// Wraps a discovered plugin. Starts nothing. Its connectors resolve credentials with the
    /// [`ConnectorEnv`]'s secret resolver they are built with.
    pub fn new(plugin: DiscoveredPlugin, settings: PluginSettings) -> Self {
        Self {
            provider_type: intern(&plugin.manifest.provider_type, "external"),
            display_name: intern(&plugin.manifest.display_name, "External plugin"),
            supervisor: Arc::new(Supervisor::new(plugin.clone(), settings)),
            plugin: Arc::new(plugin),
            credentials: None,
        }
    }

    /// Resolves credentials with `source` instead of the environment's resolver.
    #[must_use]
    pub fn with_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.credentials = Some(source);
        self
    }

    /// What discovery found: manifest, folder, fingerprint.
    pub fn discovered(&self) -> &DiscoveredPlugin {
        &self.plugin
    }

    /// Stops this plugin's process for good, when rediscovery removed or replaced it: calls
    /// in flight and later calls through connectors built from it fail with
    /// `connector_failed`. Call it after taking the factory out of the registry.
    pub async fn retire(&self) {
        self.supervisor.retire().await;
    }

    /// The process supervisor (pid, start and failure counts).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Asks the plugin to validate a configuration (after the local checks).
    ///
    /// # Errors
    /// The plugin's first field error, or [`ConfigError::Invalid`] on `config` when the plugin
    /// could not be asked.
    pub async fn validate_config_remote(
        &self,
        config: &Map<String, Value>,
    ) -> Result<(), ConfigError> {
        self.validate_config(config)?;
        let answer = self
            .supervisor
            .call(method::VALIDATE_CONFIG, json!({ "config": config }))
            .await
            .and_then(|v| {
                serde_json::from_value::<ValidateResult>(v).map_err(|e| {
                    CallError::Failed(format!("malformed validate_config result: {e}"))
                })
            });
        let answer = answer.map_err(|e| ConfigError::Invalid {
            field: "config".into(),
            message: format!(
                "the plugin could not validate it: {}",
                sanitize(&e.to_string(), None)
            ),
        })?;
        if answer.valid {
            return Ok(());
        }
        let first = answer.errors.first();
        Err(ConfigError::Invalid {
            field: first.map_or_else(|| "config".into(), |e| sanitize(&e.field, None)),
            message: first.map_or_else(
                || "refused by the plugin".into(),
                |e| sanitize(&e.message, None),
            ),
        })
    }

    /// Runs `check_health` or `test_connection` for one integration with an explicit
    /// credential (the caller resolved it, or the API received it for a one-off test).
    pub async fn health_call(
        &self,
        method: &str,
        integration_id: &str,
        config: &Map<String, Value>,
        credential: Option<&Credential>,
    ) -> HealthReport {
        if let Some(c) = credential {
            self.supervisor.remember_secret(c);
        }
        let params = protocol::integration_params(integration_id, config, credential);
        match self.supervisor.call(method, params).await {
            Ok(value) => protocol::health_report(value, credential).unwrap_or_else(|e| {
                HealthReport::unhealthy(
                    Reason::ConnectorFailed,
                    format!("plugin {} broke the protocol: {e}", self.plugin.manifest.id),
                )
            }),
            Err(e) => HealthReport {
                plugin_failures: Some(self.supervisor.failures_in_a_row()),
                ..failed(&e, credential)
            },
        }
    }

    /// Lists the resources behind one integration, with an explicit credential.
    ///
    /// # Errors
    /// [`CallError`] when the plugin does not list resources, fails, or answers out of contract.
    pub async fn list_resources(
        &self,
        integration_id: &str,
        config: &Map<String, Value>,
        credential: Option<&Credential>,
    ) -> Result<Vec<Resource>, CallError> {
        if !self
            .plugin
            .manifest
            .capabilities
            .contains(&Capability::ListResources)
        {
            return Err(CallError::Failed(format!(
                "plugin {} does not list resources",
                self.plugin.manifest.id
            )));
        }
        if let Some(c) = credential {
            self.supervisor.remember_secret(c);
        }
        let params = protocol::integration_params(integration_id, config, credential);
        let value = self
            .supervisor
            .call(method::LIST_RESOURCES, params)
            .await
            .map_err(|e| match e {
                CallError::Plugin {
                    code,
                    message,
                    reason,
                } => CallError::Plugin {
                    code,
                    message: sanitize(&message, credential),
                    reason,
                },
                CallError::Failed(m) => CallError::Failed(sanitize(&m, credential)),
            })?;
        let list: ListResourcesResult = serde_json::from_value(value)
            .map_err(|e| CallError::Failed(format!("malformed list_resources result: {e}")))?;
        let mut resources = list.resources;
        for r in &mut resources {
            r.id = sanitize(&r.id, credential);
            r.name = sanitize(&r.name, credential);
            r.url = r.url.as_deref().map(|u| sanitize(u, credential));
        }
        Ok(resources)
    }
}

impl ConnectorFactory for ExternalPlugin {
    fn provider_type(&self) -> &'static str {
        self.provider_type
    }

    fn display_name(&self) -> &'static str {
        self.display_name
    }

    fn capabilities(&self) -> &'static [Capability] {
        capabilities(&self.plugin.manifest.capabilities)
    }

    /// The local checks: the shared ones (size, no raw secrets) and the manifest's schema.
    /// [`ConnectorFactory::validate_config_async`] also asks the plugin.
    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        config::check_common(config)?;
        manifest::check_config(&self.plugin.manifest.config_schema, config)
    }

    fn validate_config_async<'a>(
        &'a self,
        config: &'a Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ConfigError>> + Send + 'a>> {
        Box::pin(self.validate_config_remote(config))
    }

    fn config_schema(&self) -> Value {
        self.plugin.manifest.config_schema.clone()
    }

    fn build(&self, spec: &IntegrationSpec, env: &ConnectorEnv) -> Result<SharedConnector, Error> {
        self.validate_config(&spec.config)?;
        let credentials = self
            .credentials
            .clone()
            .unwrap_or_else(|| Arc::new(env.secrets.clone()));
        Ok(Arc::new(ExternalConnector {
            plugin: self.clone(),
            spec: spec.clone(),
            credentials,
        }))
    }
}

// === impl ExternalConnector ===

/// One integration of an external plugin's type.
pub struct ExternalConnector {
    plugin: ExternalPlugin,
    spec: IntegrationSpec,
    credentials: Arc<dyn CredentialSource>,
}

impl ExternalConnector {
    /// The plugin behind this connector.
    pub fn plugin(&self) -> &ExternalPlugin {
        &self.plugin
    }

    async fn with_resolved(&self, method: &str) -> HealthReport {
        let credential = match self.credentials.credential(&self.spec).await {
            Ok(c) => c,
            Err(message) => {
                return HealthReport::unhealthy(Reason::CredentialUnavailable, message);
            }
        };
        let report = self.check_health_with(method, credential.as_ref()).await;
        if report.reason == Some(Reason::AuthFailed) {
            self.credentials.invalidate(&self.spec).await;
        }
        report
    }

    /// `check_health` or `test_connection` with a credential the caller provides.
    pub async fn check_health_with(
        &self,
        method: &str,
        credential: Option<&Credential>,
    ) -> HealthReport {
        self.plugin
            .health_call(method, &self.spec.id, &self.spec.config, credential)
            .await
    }
}

/// Maps a plugin's `list_resources` failure to the connector error of the same meaning.
fn list_error(e: CallError) -> Error {
    match e {
        CallError::Plugin {
            reason: Some(reason),
            message,
            ..
        } => match reason {
            Reason::AuthFailed => Error::Unauthorized,
            Reason::Forbidden => Error::Forbidden,
            Reason::RateLimited => Error::RateLimited { retry_after: None },
            Reason::Timeout => Error::Timeout,
            Reason::Network => Error::Network(message),
            Reason::Tls => Error::Tls(message),
            Reason::CredentialUnavailable | Reason::CredentialExpiring => {
                Error::BadCredential(message)
            }
            Reason::CertificateExpiring => Error::Tls(message),
            Reason::QuotaLow => Error::RateLimited { retry_after: None },
            Reason::ProviderDegraded | Reason::BadResponse | Reason::ConnectorFailed => {
                Error::BadResponse(message)
            }
        },
        CallError::Plugin { code, message, .. } => {
            Error::BadResponse(format!("plugin error {code}: {message}"))
        }
        CallError::Failed(message) => Error::BadResponse(format!("plugin failed: {message}")),
    }
}

#[async_trait::async_trait]
impl Connector for ExternalConnector {
    async fn check_health(&self) -> HealthReport {
        self.with_resolved(method::CHECK_HEALTH).await
    }

    async fn test_connection(&self) -> HealthReport {
        self.with_resolved(method::TEST_CONNECTION).await
    }

    /// Protocol 1 returns every resource in one answer, so there is one page.
    async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourcePage, Error> {
        if cursor.is_some() {
            return Err(Error::InvalidCursor);
        }
        if !self
            .plugin
            .plugin
            .manifest
            .capabilities
            .contains(&Capability::ListResources)
        {
            return Err(Error::Unsupported("this plugin cannot list resources"));
        }
        let credential = self
            .credentials
            .credential(&self.spec)
            .await
            .map_err(Error::BadCredential)?;
        let resources = self
            .plugin
            .list_resources(&self.spec.id, &self.spec.config, credential.as_ref())
            .await
            .map_err(list_error)?;
        Ok(ResourcePage {
            resources: resources
                .into_iter()
                .map(|r| crate::connector::Resource {
                    id: r.id,
                    name: r.name,
                    kind: intern(r.kind.as_deref().unwrap_or("resource"), "resource"),
                    url: r.url,
                })
                .collect(),
            next_cursor: None,
        })
    }
}
