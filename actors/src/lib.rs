//! The actors of the integrations hub, and the tenant-scoped data layer they use.
//!
//! # Layout
//! - [`tenant`]: [`TenantId`], the validated tenant name every data access starts from.
//! - [`store`]: the data layer. [`Store::tenant`] is the only way to reach tenant data, so a
//!   query without a tenant cannot be written; on PostgreSQL each access also runs in a
//!   transaction that sets the row-level-security tenant, so a missed filter still cannot leak.
//! - [`catalog`]: the catalog actor, a ractor factory keyed by tenant, the one way in for
//!   every write to a tenant's catalog (integrations, maintenance windows, webhook
//!   subscriptions). Writes of one tenant are serialised on one worker; writes of different
//!   tenants run on different workers, and reads go straight to the pool without any mailbox.
//!   Every committed change is announced once on its [`ChangeFeed`], which the health engine
//!   and the webhook worker follow.
//! - [`health`]: the health engine: one supervised monitor actor per live integration.
//! - [`events`]: health events as CloudEvents, noise control, maintenance windows and the live
//!   hub SSE streams read; the outbox itself is in [`store`].
//! - [`sinks`]: what carries the outbox out (webhooks, NATS), one contract and one driver.
//! - [`registry`]: the plugin-registry actor: built-in connectors and discovered external
//!   plugins in one shared registry.
//! - [`cluster`]: several replicas over one PostgreSQL: shards of the fleet and the leader's
//!   duties held by lease, renewed on the database clock, fenced on every result write.
//! - [`backoff`]: the retry delays of monitors, the NATS relay and webhook deliveries.
//! - [`status`]: the health status vocabulary every layer shares.
//! - [`db`]: connecting (pool settings per backend) and migrating.
//! - [`error`]: [`CatalogError`], in domain terms; the daemon maps it to HTTP in one place.

pub mod backoff;
pub mod catalog;
pub mod cluster;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod registry;
pub mod sinks;
pub mod status;
pub mod store;
pub mod tenant;

pub use catalog::{Catalog, CatalogMsg, Change, ChangeFeed};
pub use error::CatalogError;
pub use store::{
    AuditEntry, AuditQuery, IntegrationChanges, IntegrationQuery, MonitoringChanges,
    NewIntegration, Page, Store, TenantStore,
};
pub use tenant::TenantId;
