//! Connector plugins: the contract every provider implements, and the built-in providers.
//!
//! # Layout
//! - [`provider`]: the contract a provider implements: [`ConnectorFactory`], or its typed
//!   shortcut [`Provider`], and the optional [`Capability`]s.
//! - [`registry`]: the explicit list of built-in connectors ([`registry::builtin`]) and the
//!   registry by provider type. A new connector is one module plus one line there.
//! - [`config`]: checks every provider's configuration shares: a JSON object, a size limit, and
//!   no raw secrets (credentials travel as AuthRef URIs).
//! - [`url_check`]: the one rule for every URL the daemon is given (integration configs,
//!   webhook targets): no userinfo, no fragment, no credential-like query parameter.
//! - [`connector`]: the [`Connector`] contract a built integration implements; [`health`]:
//!   what a check reports; [`error`]: why a connector failed, as a health reason.
//! - [`authref`]: the `authref://<backend>/<path>[#key]` credential reference.
//! - [`settings`]: the deployment's [`Settings`] (`[connectors]` in the daemon's config);
//!   [`ConnectorEnv::new`] builds the shared services from them once at start-up.
//! - [`outbound`]: the one HTTP path to providers: shared client, SSRF guard, per-host rate
//!   limits, `Retry-After` and rate-limit headers.
//! - [`secrets`]: AuthRef resolution (Vault/OpenBao KV v2, env, file) into a redacting
//!   [`secrets::Secret`], each tenant's reference only inside that tenant's namespace
//!   ([`secrets::TenantRef`]), bound to the hosts its owner allows, with a per-tenant TTL cache
//!   dropped on a provider's 401.
//! - [`testing`]: [`testing::assert_conformance`], which every connector's tests call.
//! - [`trace`]: W3C Trace Context (`traceparent`) on every outbound call.
//! - [`external`]: out-of-process plugins: manifest discovery, the JSON-RPC protocol, and the
//!   supervisor of each plugin's child process (`docs/plugins.md`).
//! - One module per provider: [`github_app`], [`gitlab`], [`harbor`], [`oci_registry`],
//!   [`memory`] (the deterministic test double); the cloud registries (ECR, Artifact
//!   Registry, ACR, GHCR) and the cache of the tokens they mint in [`cloud_registry`].
//!
//! This crate knows neither the database nor HTTP serving: it is used by the actors (which
//! schedule checks) and by the daemon (which validates requests), never the other way round.

pub mod authref;
pub mod cloud_registry;
pub mod config;
pub mod connector;
pub mod error;
pub mod external;
pub mod github_app;
pub mod gitlab;
pub mod harbor;
pub mod health;
pub mod memory;
pub mod oci_registry;
pub mod outbound;
pub mod provider;
pub mod registry;
pub mod secrets;
pub mod settings;
pub mod testing;
pub mod trace;
pub mod url_check;

pub use config::ConfigError;
pub use connector::{
    Connector, ConnectorEnv, EnvError, Error, IntegrationSpec, Resource, ResourcePage,
    SharedConnector, Webhook, WebhookRequest,
};
pub use health::{Health, HealthReport, Quota, Reason};
pub use provider::{Capability, ConnectorFactory, Provider};
pub use registry::Registry;
pub use settings::Settings;
