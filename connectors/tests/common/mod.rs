//! Shared set-up of the crate's integration tests: peers by environment variable.
//!
//! `scripts/connector-peers` starts the peers on loopback and exports their addresses. A test
//! that needs a missing peer fails when `CI` is set (a CI run must not pass without running
//! it), and otherwise skips with a printed reason.

#![allow(dead_code)]

use std::path::Path;

use connectors::ConnectorEnv;

/// Prism serving GitHub's description (`github.json`).
pub const PRISM_GITHUB: &str = "CONNECTORS_PRISM_GITHUB_URL";
/// Prism serving GitLab's description (`gitlab.prism.yaml`).
pub const PRISM_GITLAB: &str = "CONNECTORS_PRISM_GITLAB_URL";
/// Prism serving Harbor's description (`harbor.prism.yaml`).
pub const PRISM_HARBOR: &str = "CONNECTORS_PRISM_HARBOR_URL";
/// An OpenBao dev server.
pub const OPENBAO_ADDR: &str = "CONNECTORS_OPENBAO_ADDR";
/// Its root token (a throwaway of the dev server, made up by the script).
pub const OPENBAO_TOKEN: &str = "CONNECTORS_OPENBAO_TOKEN";
/// Its unseal key, so the sealed scenario can unseal it again.
pub const OPENBAO_UNSEAL_KEY: &str = "CONNECTORS_OPENBAO_UNSEAL_KEY";
/// Debian's docker-registry with htpasswd auth.
pub const REGISTRY_URL: &str = "CONNECTORS_REGISTRY_URL";
/// Its user.
pub const REGISTRY_USER: &str = "CONNECTORS_REGISTRY_USER";
/// The name of the environment variable holding its password (read through the `env`
/// AuthRef backend, as a small deployment would).
pub const REGISTRY_PASSWORD: &str = "CONNECTORS_REGISTRY_PASSWORD";

/// moto's server mode, serving the AWS ECR API with SigV4 verification on.
pub const MOTO_URL: &str = "CONNECTORS_MOTO_URL";
/// The access key id moto issued for the tests.
pub const MOTO_ACCESS_KEY_ID: &str = "CONNECTORS_MOTO_ACCESS_KEY_ID";
/// Its secret access key (a throwaway of the test server).
pub const MOTO_SECRET_ACCESS_KEY: &str = "CONNECTORS_MOTO_SECRET_ACCESS_KEY";
/// The repositories created in it, comma-separated.
pub const MOTO_REPOSITORIES: &str = "CONNECTORS_MOTO_REPOSITORIES";

/// The value of a peer's variable; `None` (after saying why) when it is unset outside CI.
///
/// # Panics
/// When the variable is unset and `CI` is set.
pub fn peer(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{var} is not set, so {what} cannot be tested; under CI the peers are required: \
             run the tests through scripts/connector-peers"
        ),
        _ => {
            eprintln!("SKIPPED: {var} is not set; run scripts/connector-peers to test {what}");
            None
        }
    }
}

/// A loopback environment with the file backend reading `dir`; tenant `t` may name the
/// registry password's variable (as an operator maps a variable to a tenant).
pub fn env(dir: &Path) -> ConnectorEnv {
    connectors::testing::install_crypto();
    connectors::testing::loopback_env_with(dir, |settings| {
        settings.secrets.tenants.insert(
            "t".into(),
            connectors::settings::TenantSecretsSettings {
                env: vec![REGISTRY_PASSWORD.into()],
                ..Default::default()
            },
        );
    })
}
