//! The StellaOps Integrations hub daemon.
//!
//! # Layout
//! - [`config`]: the TOML configuration and its environment overrides.
//! - [`auth`]: bearer tokens (API keys, JWTs) into principals with a tenant and scopes.
//! - [`api`]: the poem-openapi REST API and its problem+json error mapping.
//! - [`telemetry`] sets up logging, metrics (`/metrics`, OTLP) and traces.
//! - [`namespaces`]: the start-up check of stored credential references against the tenants'
//!   secret namespaces.
//! - [`state`]: [`AppState`], what every request handler shares.
//! - [`verify`]: the connection test before a save (`?verify=true`).
//! - [`wiring`]: [`check`] validates a configuration as start-up does; [`start`] wires it all together (database, migrations, the plugin registry,
//!   the catalog actor and its change feed, the health engine, the list of event sinks, the
//!   HTTP listeners); [`run`] serves until the shutdown signal.
//! - [`server`]: [`Running`], the listeners, and the order of a graceful shutdown.
//! - [`reload`]: `SIGHUP` re-reads the configuration and swaps in the API keys, the JWT
//!   settings and the log filter.
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
pub mod reload;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod verify;
pub mod wiring;

use std::time::Duration;

pub use server::Running;
pub use state::AppState;
pub use wiring::{Checked, Error, check, migrate, run, run_reloading, start};

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The tenant of the administrator key generated at first start.
pub const BOOTSTRAP_TENANT: &str = "default";

/// Installs the process-wide TLS crypto provider (ring). Call once, first thing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
