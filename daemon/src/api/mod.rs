//! The REST API: poem-openapi operations, the error mapping, and the routes around them.
//!
//! # Layout
//! - [`integrations`], [`maintenance`], [`events`], [`incidents`], [`webhooks`], [`audit`],
//!   [`cluster`], [`keys`], [`system`]: operations, one module per resource.
//! - [`types`]: request and response bodies (never storage models).
//! - [`error`]: every error as `application/problem+json`, mapped in one place; each
//!   operation declares the error statuses it can answer with `Problems<{ .. }>`.
//! - [`document`]: the OpenAPI document, completed (scopes, servers, links) where
//!   poem-openapi stops.
//! - [`security`]: the bearer scheme; [`validate`]: field checks; [`precondition`]:
//!   `If-Match`.
//! - [`edge`]: checks every request passes before routing (body size, NUL characters).
//! - [`metrics`]: `/metrics`, on the main listener or one of its own, optionally behind a token.
//! - [`observe`]: every request's span (continuing a `traceparent`), log line and duration
//!   metric by route template.
//! - [`renamed`]: operations still served under an earlier, deprecated name.

pub mod audit;
pub mod cluster;
pub mod document;
pub mod edge;
pub mod error;
pub mod events;
pub mod incidents;
pub mod integrations;
pub mod keys;
pub mod maintenance;
pub mod metrics;
pub mod observe;
pub mod plugins;
pub mod precondition;
pub mod renamed;
pub mod resources;
pub mod security;
pub mod system;
pub mod types;
pub mod validate;
pub mod webhooks;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// The integration catalog.
    Integrations,
    /// The audit trail of catalog changes.
    Audit,
    /// Health events: a live stream of the tenant's events.
    Events,
    /// Webhook subscriptions for health events, and their deliveries.
    Webhooks,
    /// API keys: created, listed and revoked without a restart.
    ApiKeys,
    /// Shared outages: one incident for many integrations failing behind one domain.
    Incidents,
    /// Probes.
    System,
}

type Apis = (
    integrations::IntegrationsApi,
    maintenance::MaintenanceApi,
    events::EventsApi,
    resources::ResourcesApi,
    plugins::PluginsApi,
    audit::AuditApi,
    webhooks::WebhooksApi,
    incidents::IncidentsApi,
    cluster::ClusterApi,
    keys::ApiKeysApi,
    system::SystemApi,
);

/// The OpenAPI service: operations plus document metadata.
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            integrations::IntegrationsApi,
            maintenance::MaintenanceApi,
            events::EventsApi,
            resources::ResourcesApi,
            plugins::PluginsApi,
            audit::AuditApi,
            webhooks::WebhooksApi,
            incidents::IncidentsApi,
            cluster::ClusterApi,
            keys::ApiKeysApi,
            system::SystemApi,
        ),
        "StellaOps Integrations",
        env!("CARGO_PKG_VERSION"),
    )
    .license(
        poem_openapi::LicenseObject::new(env!("CARGO_PKG_LICENSE"))
            .url("https://www.gnu.org/licenses/agpl-3.0.html"),
    )
    .contact(
        poem_openapi::ContactObject::new()
            .name("StellaOps")
            .url("https://git.stella-ops.org/stella-ops.org/git.stella-ops.org"),
    )
    .description(
        "The integration catalog and connector hub: register connections to external tools \
         (GitHub App, GitLab, Harbor, OCI registries, CI systems) per tenant and follow their \
         health. Every /api operation needs a bearer token (an API key or a JWT).",
    )
}

/// The OpenAPI document as checked in at the repository root: the one a hub without
/// `http.public_url` and without a JWT authority serves.
pub fn spec_json() -> String {
    document::render(&document::Site::default())
}

/// The document a hub serves, naming its own public URL and JWT authority.
fn site(state: &AppState) -> document::Site {
    document::Site {
        public_url: state.public_url.clone(),
        issuer: state
            .auth
            .jwt_issuer()
            .map(|i| i.trim_end_matches('/').to_owned()),
        providers: Some(
            state
                .registry
                .read()
                .expect("registry lock")
                .iter()
                .map(|f| (f.provider_type().to_owned(), f.config_schema()))
                .collect(),
        ),
    }
}

/// Every route of the main listener; `/metrics` among them unless it has a listener of its
/// own (`None`).
pub fn routes(
    state: Arc<AppState>,
    body_limit: usize,
    metrics: Option<poem::RouteMethod>,
) -> impl Endpoint {
    let service = service();
    // Swagger UI's page embeds the document: the generated one is swapped for the completed.
    let generated = service.spec();
    let page = service.swagger_ui_html();
    let spec_state = state.clone();
    let docs_state = state.clone();
    let rendered = Arc::new(document::Rendered::default());
    let docs_rendered = rendered.clone();
    let mut route = Route::new()
        .nest("/", service)
        .nest(
            "/docs",
            Route::new().at(
                "/",
                poem::endpoint::make_sync(move |_| {
                    let spec = docs_rendered.for_site(site(&docs_state));
                    poem::web::Html(page.replacen(&generated, &spec, 1))
                }),
            ),
        )
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(rendered.for_site(site(&spec_state)).to_string())
            }),
        );
    if let Some(metrics) = metrics {
        route = route.at("/metrics", metrics);
    }
    route
        .data(state)
        .around(renamed::alias)
        .around(move |ep, req| edge::guard(ep, req, body_limit))
        .around(observe::request)
        .catch_all_error(error::catch_all)
}
