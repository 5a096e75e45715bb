//! The set-up the built-in providers' unit tests share: one integration of [`TENANT`] against
//! a mock of its provider, its credential in a secrets folder, and a loopback environment
//! whose `file` backend reads that folder. Each provider's tests keep only what is theirs:
//! the credential, the configuration, the mocks and the assertions.
//!
//! Test-only (`wiremock` and `tempfile` are dev-dependencies), so not part of the public
//! [`testing`](super) module the integration tests see.

use serde_json::Value;
use tempfile::TempDir;
use wiremock::MockServer;

use super::{Conformance, TENANT, install_crypto, loopback_env_with};
use crate::Settings;
use crate::authref::AuthRef;
use crate::connector::{ConnectorEnv, IntegrationSpec, SharedConnector};
use crate::health::Health;
use crate::provider::ConnectorFactory;

/// One integration against a mock of its provider. The secrets folder is removed when the
/// fixture drops.
pub struct Fixture {
    /// The mock of the provider's API.
    pub server: MockServer,
    /// A loopback environment (see [`super::loopback_settings`]) whose `file` backend reads
    /// the secrets folder.
    pub env: ConnectorEnv,
    dir: TempDir,
    factory: &'static dyn ConnectorFactory,
    config: Value,
    credential: Option<AuthRef>,
}

impl Fixture {
    /// Writes `credential` (a secret's name under [`TENANT`]'s folder, slashes allowed, and
    /// its value), starts the mock, and keeps `config(mock's URL)` as the integration's
    /// configuration.
    pub async fn new(
        factory: &'static dyn ConnectorFactory,
        credential: (&str, &str),
        config: impl FnOnce(&str) -> Value,
    ) -> Self {
        Self::tuned(factory, credential, config, |_| {}).await
    }

    /// [`Fixture::new`] with the loopback settings changed by `tune` (a shorter timeout, say).
    pub async fn tuned(
        factory: &'static dyn ConnectorFactory,
        (name, value): (&str, &str),
        config: impl FnOnce(&str) -> Value,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir, name, value);
        let env = loopback_env_with(dir.path(), tune);
        let server = MockServer::start().await;
        Fixture {
            config: config(&server.uri()),
            server,
            env,
            dir,
            factory,
            credential: secret_ref(name),
        }
    }

    /// Writes (or rotates) one of [`TENANT`]'s secrets.
    pub fn write_secret(&self, name: &str, value: &str) {
        write_secret(&self.dir, name, value);
    }

    /// Writes a secret of another tenant, `authref://file/tenants/<tenant>/<name>`.
    pub fn write_tenant_secret(&self, tenant: &str, name: &str, value: &str) {
        let file = self.dir.path().join("tenants").join(tenant).join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, value).unwrap();
    }

    /// The integration's configuration.
    pub fn config(&self) -> Value {
        self.config.clone()
    }

    /// The integration's `auth_ref`: the credential written by [`Fixture::new`].
    pub fn credential(&self) -> Option<AuthRef> {
        self.credential.clone()
    }

    /// The integration as stored, with `auth_ref` as its credentials reference.
    pub fn spec(&self, auth_ref: Option<AuthRef>) -> IntegrationSpec {
        spec(self.factory, self.config(), auth_ref)
    }

    /// Builds the connector with its credential.
    ///
    /// # Panics
    /// If the build fails.
    pub fn build(&self) -> SharedConnector {
        self.build_with(self.credential())
    }

    /// Builds the connector with `auth_ref` as its credentials reference.
    ///
    /// # Panics
    /// If the build fails.
    pub fn build_with(&self, auth_ref: Option<AuthRef>) -> SharedConnector {
        self.factory.build(&self.spec(auth_ref), &self.env).unwrap()
    }

    /// A conformance run of the integration that expects the mock to report healthy, and
    /// `secrets` in no output.
    pub fn healthy_conformance(&self, secrets: Vec<String>) -> Conformance<'static> {
        Conformance {
            factory: self.factory,
            config: self.config(),
            auth_ref: self.credential(),
            env: self.env.clone(),
            expect: Health::Healthy,
            secrets,
        }
    }
}

fn write_secret(dir: &TempDir, name: &str, value: &str) {
    let file = dir.path().join("tenants").join(TENANT).join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, value).unwrap();
}

/// The `file` backend's reference to [`TENANT`]'s secret `name`, as an `auth_ref`.
pub fn secret_ref(name: &str) -> Option<AuthRef> {
    Some(
        format!("authref://file/tenants/{TENANT}/{name}")
            .parse()
            .unwrap(),
    )
}

/// An integration of [`TENANT`] with `factory`'s provider type (also its id).
///
/// # Panics
/// If `config` is not a JSON object.
pub fn spec(
    factory: &dyn ConnectorFactory,
    config: Value,
    auth_ref: Option<AuthRef>,
) -> IntegrationSpec {
    IntegrationSpec {
        id: factory.provider_type().into(),
        tenant: TENANT.into(),
        provider_type: factory.provider_type().into(),
        config: config.as_object().unwrap().clone(),
        auth_ref,
    }
}
