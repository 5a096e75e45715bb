//! The provider contract: what a connector factory offers ([`ConnectorFactory`]), the typed
//! shortcut most built-in providers implement ([`Provider`]), and the optional capabilities.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::config::ConfigError;
use crate::connector::{ConnectorEnv, Error, IntegrationSpec, SharedConnector};

/// Optional things a connector can do beyond checking health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Checks the provider's health.
    HealthCheck,
    /// Lists the repositories or projects behind the integration.
    ListResources,
    /// Creates webhooks on the provider.
    SetupWebhook,
}

impl Capability {
    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::HealthCheck => "health_check",
            Capability::ListResources => "list_resources",
            Capability::SetupWebhook => "setup_webhook",
        }
    }
}

/// What the catalog needs to know about a provider type before it stores an integration.
///
/// Kept small on purpose: optional abilities are described by [`Capability`], and methods
/// added later get default bodies so existing connectors keep compiling.
pub trait ConnectorFactory: Send + Sync + 'static {
    /// The provider type, as stored in `integrations.type` (e.g. `gitlab`).
    fn provider_type(&self) -> &'static str;

    /// A human-readable name for forms and listings.
    fn display_name(&self) -> &'static str;

    /// What the connector can do.
    fn capabilities(&self) -> &'static [Capability] {
        &[Capability::HealthCheck]
    }

    /// Checks a configuration object for this provider.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending field.
    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError>;

    /// Checks a configuration with everything the provider has, which may need I/O (an
    /// external plugin asks its process). Defaults to [`Self::validate_config`]; the API calls
    /// this one before storing an integration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending field.
    fn validate_config_async<'a>(
        &'a self,
        config: &'a Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ConfigError>> + Send + 'a>> {
        Box::pin(std::future::ready(self.validate_config(config)))
    }

    /// The JSON Schema (draft 2020-12) of this provider's configuration object, for forms and
    /// the API's plugin listing. The default accepts any object; built-ins derive theirs from
    /// their typed config with [`schema_of`].
    fn config_schema(&self) -> Value {
        serde_json::json!({"type": "object"})
    }

    /// Builds the live connector of one integration.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration that does not parse, [`Error::Unsupported`] when
    /// this build cannot check the provider's health.
    fn build(&self, spec: &IntegrationSpec, env: &ConnectorEnv) -> Result<SharedConnector, Error> {
        let _ = (spec, env);
        Err(Error::Unsupported(
            "health checks of this provider are not available in this build",
        ))
    }
}

/// A built-in provider with a typed configuration. Implementing it is all a connector's factory
/// needs: [`ConnectorFactory`] follows, with the schema derived from [`Provider::Config`] and
/// validation by parsing it strictly (unknown fields refused) and running [`Provider::check`].
pub trait Provider: Send + Sync + 'static {
    /// The provider type, as stored in `integrations.type` (e.g. `gitlab`).
    const TYPE: &'static str;
    /// A human-readable name for forms and listings.
    const DISPLAY_NAME: &'static str;
    /// What the connector can do.
    const CAPABILITIES: &'static [Capability] = &[Capability::HealthCheck];

    /// The configuration: `#[serde(deny_unknown_fields, rename_all = "camelCase")]`, a `///` on
    /// every field (it becomes the schema's description).
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;

    /// Checks a parsed configuration beyond its shape (URLs, ranges, fields that go together).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending field as `config.<field>`.
    fn check(config: &Self::Config) -> Result<(), ConfigError> {
        let _ = config;
        Ok(())
    }

    /// Builds the live connector of one integration from its checked configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for what only the whole integration can tell (a credential the
    /// configuration requires, and so on).
    fn connect(
        config: Self::Config,
        spec: &IntegrationSpec,
        env: &ConnectorEnv,
    ) -> Result<SharedConnector, Error>;
}

/// Parses and checks a provider's configuration.
fn typed<P: Provider>(config: &Map<String, Value>) -> Result<P::Config, ConfigError> {
    let parsed = crate::config::parse(config)?;
    P::check(&parsed)?;
    Ok(parsed)
}

impl<P: Provider> ConnectorFactory for P {
    fn provider_type(&self) -> &'static str {
        P::TYPE
    }

    fn display_name(&self) -> &'static str {
        P::DISPLAY_NAME
    }

    fn capabilities(&self) -> &'static [Capability] {
        P::CAPABILITIES
    }

    fn validate_config(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        typed::<P>(config).map(|_| ())
    }

    fn config_schema(&self) -> Value {
        schema_of::<P::Config>()
    }

    fn build(&self, spec: &IntegrationSpec, env: &ConnectorEnv) -> Result<SharedConnector, Error> {
        let connector = P::connect(typed::<P>(&spec.config)?, spec, env)?;
        Ok(match spec.credential() {
            // Whatever the provider, a secret whose store tells its expiry is judged by it.
            Some(credential) => std::sync::Arc::new(crate::connector::SecretExpiry::new(
                connector,
                credential,
                env.clone(),
            )),
            None => connector,
        })
    }
}

/// The JSON Schema of a typed configuration, as [`ConnectorFactory::config_schema`] returns it.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}
