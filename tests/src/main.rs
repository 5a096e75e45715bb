//! Black-box tests: each starts the real daemon (`daemon::start`) on a free loopback port with a
//! fresh database and talks HTTP to it like any client.
//!
//! The database is SQLite by default; `STELLA_TEST_DATABASE=postgres` runs the same suite on a
//! fresh PostgreSQL database per test, owned by an unprivileged role so that row-level security
//! is in force (see `actors::db::testing`).
//!
//! # Layout
//! - `context`: [`context::TestContext`], keys, and request helpers.
//! - `authority`: a fake OAuth authority serving a JWKS, and token minting.
//! - One module per area: `catalog`, `tenancy`, `auth`, `validation`, `preconditions`,
//!   `metrics`, `openapi`, `bootstrap`, `webhooks`, `credentials` (tenant-scoped secrets, from
//!   the attacker's side), `incidents` (shared outages, end to end), `url_secrets` (no credentials in URLs, no values echoed in refusals).

mod api_keys;
mod auth;
mod authority;
mod bootstrap;
mod catalog;
mod connectors;
mod context;
mod credentials;
mod events;
mod health;
mod incidents;
mod locations;
mod metrics;
mod nats;
mod openapi;
mod plugins;
mod preconditions;
mod tenancy;
mod url_secrets;
mod validation;
mod webhooks;
