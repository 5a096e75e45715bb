//! The cloud registries: Amazon ECR, Google Artifact Registry, Azure Container Registry and
//! GitHub Container Registry, each a provider type of its own.
//!
//! Each speaks the OCI distribution API for images, but none is reached the way the generic
//! [`oci_registry`](crate::oci_registry) connector reaches a registry: the credentials users
//! have are an AWS access key, a Google service account key, an Azure service principal or a
//! GitHub token, and each is traded for a short-lived registry token by the vendor's own
//! exchange; and ECR and GHCR serve no `/v2/_catalog`, so repositories come from the vendor's
//! API. As provider types of their own, each has a configuration schema that says what it
//! needs (a region, a project, a tenant id) instead of modes of one schema.
//!
//! # Layout
//! - [`tokens`]: the daemon-wide cache of minted tokens, keyed per tenant and integration.
//! - [`ecr`]: SigV4-signed `GetAuthorizationToken` and `DescribeRepositories`.
//! - [`gar`]: a service account key's RS256 assertion traded for an OAuth access token
//!   (JWT bearer grant), then the Artifact Registry REST API.
//! - [`acr`]: client credentials for an Entra ID (AAD) token, traded for an ACR refresh token
//!   and then an access token, then `/v2/_catalog`.
//! - [`ghcr`]: a GitHub token traded at `ghcr.io/token`, and the GitHub packages API.

pub mod acr;
pub mod ecr;
pub mod gar;
pub mod ghcr;
pub mod tokens;

pub use tokens::TokenCache;
