//! Connector plugins: the contract every provider implements, and the built-in providers.
//!
//! # Layout
//! - [`registry`]: the explicit list of built-in connectors ([`registry::builtin`]). A new
//!   connector is one module plus one line there.
//! - [`config`]: checks every provider's configuration shares: a JSON object, a size limit, and
//!   no raw secrets (credentials travel as AuthRef URIs).
//! - [`connector`]: the [`Connector`] contract a built integration implements; [`health`]:
//!   what a check reports.
//! - [`authref`]: the `authref://<backend>/<path>[#key]` credential reference.
//! - One module per provider: [`github_app`], [`gitlab`], [`harbor`], [`oci_registry`],
//!   [`memory`] (the deterministic test double).
//!
//! This crate knows neither the database nor HTTP serving: it is used by the actors (which
//! schedule checks) and by the daemon (which validates requests), never the other way round.

pub mod authref;
pub mod config;
pub mod connector;
pub mod github_app;
pub mod gitlab;
pub mod harbor;
pub mod health;
pub mod memory;
pub mod oci_registry;
pub mod registry;

pub use config::ConfigError;
pub use connector::{Connector, ConnectorEnv, IntegrationSpec, SharedConnector};
pub use health::{Health, HealthReport, Reason};
pub use registry::{Capability, ConnectorFactory, Registry};
