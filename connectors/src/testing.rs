//! The conformance check every connector's tests run against a mock of its provider.
//!
//! It checks what the daemon relies on without knowing the provider: a stable snake_case type,
//! a JSON Schema that describes the configuration, strict config parsing, a report with a
//! reason exactly when it is not healthy, capabilities that match what the connector really
//! does, and no secret in any message or `Debug` output.

use serde_json::{Map, Value};

use crate::authref::AuthRef;
use crate::connector::{ConnectorEnv, Error, IntegrationSpec, SharedConnector, WebhookRequest};
use crate::health::Health;
use crate::provider::{Capability, ConnectorFactory};

/// The built-in providers' shared unit-test set-up (a mock, a secrets folder, an environment).
#[cfg(test)]
pub(crate) mod fixture;

/// The tenant of the integration a conformance run builds: its `auth_ref` must be in this
/// tenant's namespace (`authref://file/tenants/t/…` with the default folders).
pub const TENANT: &str = "t";

/// One conformance run.
pub struct Conformance<'a> {
    /// The connector under test.
    pub factory: &'a dyn ConnectorFactory,
    /// A valid configuration pointing at the mock provider.
    pub config: Value,
    /// The integration's credentials reference, in [`TENANT`]'s namespace.
    pub auth_ref: Option<AuthRef>,
    /// The environment (allowing the mock's loopback address).
    pub env: ConnectorEnv,
    /// The health the mock provider should produce.
    pub expect: Health,
    /// Secret values that must appear in no output.
    pub secrets: Vec<String>,
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} leaks a secret: {text}");
    }
}

/// Runs the conformance checks and returns the built connector for further tests.
///
/// # Panics
/// On the first violated expectation, with what was violated.
pub async fn assert_conformance(case: Conformance<'_>) -> SharedConnector {
    let f = case.factory;
    let t = f.provider_type();
    assert!(
        !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "provider type {t:?} is not snake_case"
    );
    assert!(!f.display_name().is_empty(), "{t}: empty display name");
    assert!(
        f.capabilities().contains(&Capability::HealthCheck),
        "{t}: every connector checks health"
    );

    // The schema describes every field of the sample config.
    let schema = f.config_schema();
    assert_eq!(
        schema["type"], "object",
        "{t}: schema is not an object schema"
    );
    let config: Map<String, Value> = case
        .config
        .as_object()
        .cloned()
        .expect("the sample config is an object");
    for key in config.keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "{t}: schema lacks property {key}: {schema}"
        );
    }
    f.validate_config(&config)
        .unwrap_or_else(|e| panic!("{t}: sample config refused: {e}"));
    let mut unknown = config.clone();
    unknown.insert("noSuchField".into(), Value::from(1));
    let err = f
        .validate_config(&unknown)
        .expect_err("unknown fields are refused");
    assert!(err.field().starts_with("config"), "{t}: {err}");

    let spec = IntegrationSpec {
        id: "conformance".into(),
        tenant: TENANT.into(),
        provider_type: t.into(),
        config,
        auth_ref: case.auth_ref.clone(),
    };
    let connector = f
        .build(&spec, &case.env)
        .unwrap_or_else(|e| panic!("{t}: build failed: {e}"));
    assert_no_secret("env Debug", &format!("{:?}", case.env), &case.secrets);

    for (what, report) in [
        ("check_health", connector.check_health().await),
        ("test_connection", connector.test_connection().await),
    ] {
        assert_eq!(report.health, case.expect, "{t} {what}: {report:?}");
        assert_eq!(
            report.reason.is_some(),
            report.health != Health::Healthy,
            "{t} {what}: a reason exactly when not healthy: {report:?}"
        );
        if report.health != Health::Healthy {
            assert!(report.message.is_some(), "{t} {what}: no message");
        }
        assert_no_secret(what, &format!("{report:?}"), &case.secrets);
    }

    let listed = connector.list_resources(None).await;
    assert_no_secret("list_resources", &format!("{listed:?}"), &case.secrets);
    if f.capabilities().contains(&Capability::ListResources) {
        assert!(
            !matches!(listed, Err(Error::Unsupported(_))),
            "{t}: lists ListResources but does not implement it"
        );
    } else {
        assert!(
            matches!(listed, Err(Error::Unsupported(_))),
            "{t}: implements list_resources without the capability"
        );
    }
    if !f.capabilities().contains(&Capability::SetupWebhook) {
        let hook = WebhookRequest {
            target: "o/r".into(),
            url: "https://hooks.example.com/x".into(),
            events: vec![],
            secret: None,
        };
        assert!(
            matches!(
                connector.setup_webhook(&hook).await,
                Err(Error::Unsupported(_))
            ),
            "{t}: implements setup_webhook without the capability"
        );
    }
    connector
}

/// Settings for tests against mocks on loopback: loopback allowed, short timeouts.
pub fn loopback_settings() -> crate::Settings {
    let mut settings = crate::Settings::default();
    settings.outbound.allow_private_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    settings.outbound.request_timeout_ms = 3_000;
    settings.outbound.connect_timeout_ms = 2_000;
    settings.outbound.per_host_requests_per_second = 1_000;
    settings.outbound.per_host_burst = 1_000;
    settings
}

/// A loopback environment (see [`loopback_settings`]) whose `file` backend reads
/// `secrets_dir`, with the secret cache on.
///
/// # Panics
/// If the environment cannot be built.
pub fn loopback_env(secrets_dir: &std::path::Path) -> ConnectorEnv {
    loopback_env_with(secrets_dir, |_| {})
}

/// [`loopback_env`] with the settings changed by `tune` first (a shorter timeout, a tenant's
/// secret namespace).
///
/// # Panics
/// If the environment cannot be built.
pub fn loopback_env_with(
    secrets_dir: &std::path::Path,
    tune: impl FnOnce(&mut crate::Settings),
) -> ConnectorEnv {
    let mut settings = loopback_settings();
    settings.secrets.secrets_dir = Some(secrets_dir.to_owned());
    tune(&mut settings);
    ConnectorEnv::new(&settings).expect("loopback env")
}

/// Installs the ring crypto provider, as the daemon does first thing in `main`.
pub fn install_crypto() {
    crate::outbound::ensure_crypto_provider();
}
