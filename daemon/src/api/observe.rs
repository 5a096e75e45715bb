//! Every request's telemetry, on the main listener and on the metrics listener: a span that
//! continues the caller's trace (W3C `traceparent`), a log line when it is answered, and
//! `http.server.request.duration` (`http_server_request_duration_seconds` on `/metrics`), by
//! method, route template and status, after OpenTelemetry's HTTP semantic conventions.
//!
//! The labels are bounded whatever a client sends: the route is the template that matched
//! (`/api/v1/integrations/{id}`, never an id), absent when nothing matched; a method outside
//! the standard ones is `_OTHER`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::trace::TraceContextExt as _;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The semantic conventions' advice for `http.server.request.duration`, in seconds.
const BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn duration() -> &'static Histogram<f64> {
    static DURATION: OnceLock<Histogram<f64>> = OnceLock::new();
    DURATION.get_or_init(|| {
        opentelemetry::global::meter(crate::telemetry::SERVICE_NAME)
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests, by method, route and status.")
            .with_boundaries(BOUNDARIES.to_vec())
            .build()
    })
}

/// The middleware (`.around(observe::request)`).
///
/// # Errors
/// The endpoint's own, unchanged.
pub async fn request<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "request",
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        url.path = req.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    // A malformed or absent `traceparent` starts a trace of its own.
    let _ = span.set_parent(connectors::trace::extract(req.headers()));
    let result = next
        .call(req)
        .instrument(span.clone())
        .await
        .map(IntoResponse::into_response);
    let (status, pattern) = match &result {
        Ok(response) => (response.status(), response.data::<PathPattern>()),
        Err(error) => (error.status(), error.data::<PathPattern>()),
    };
    // The outermost route's own pattern is empty: nothing under it matched.
    let route = pattern
        .filter(|p| !p.0.is_empty())
        .map(|p| documented(template(&p.0)));
    let elapsed = started.elapsed();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    ];
    if let Some(route) = &route {
        span.record("http.route", route.as_str());
        // The span's OpenTelemetry side exists already (it has a parent, and may have sent
        // its context on): its name changes there, not through the `otel.name` field.
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
        attributes.push(KeyValue::new("http.route", route.clone()));
    }
    span.record("http.response.status_code", status.as_u16());
    duration().record(elapsed.as_secs_f64(), &attributes);
    let _entered = span.enter();
    if status.is_server_error() {
        tracing::error!(
            message = "Request answered.",
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64
        );
    } else if status != StatusCode::NOT_FOUND || route.is_some() {
        tracing::info!(
            message = "Request answered.",
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64
        );
    }
    result
}

/// The method as a label: one of the standard methods, else `_OTHER` (a client cannot make
/// new series by inventing methods).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The API document's path for `template`: poem-openapi's routes name their parameters
/// `param0`, `param1`, …, the document by their meaning (`/api/v1/integrations/{id}`). A
/// template the document does not have (`/docs/…`) stays as it is.
fn documented(template: String) -> String {
    static PATHS: OnceLock<HashMap<String, String>> = OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap_or_default();
        spec["paths"]
            .as_object()
            .map(|paths| paths.keys().map(|p| (shape(p), p.clone())).collect())
            .unwrap_or_default()
    });
    paths.get(&shape(&template)).cloned().unwrap_or(template)
}

/// A template with every parameter's name left out: `/a/{}/b/{}`.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A poem route pattern in the API document's notation: `/integrations/:id` is
/// `/integrations/{id}`, a trailing `*rest` `{*rest}`.
fn template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if let Some(name) = segment.strip_prefix(':') {
                format!("{{{name}}}")
            } else if let Some(name) = segment.strip_prefix('*') {
                format!("{{*{name}}}")
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_read_like_the_api_document() {
        assert_eq!(
            template("/api/v1/integrations/:id/health"),
            "/api/v1/integrations/{id}/health"
        );
        assert_eq!(template("/docs/*path"), "/docs/{*path}");
        assert_eq!(template("/healthz"), "/healthz");
        assert_eq!(template("/"), "/");
    }

    #[test]
    fn routes_are_named_as_in_the_api_document() {
        for (pattern, want) in [
            ("/api/v1/integrations/:param0", "/api/v1/integrations/{id}"),
            (
                "/api/v1/integrations/:param0/maintenance-windows/:param1",
                "/api/v1/integrations/{id}/maintenance-windows/{windowId}",
            ),
            (
                "/api/v1/webhook-subscriptions/:param0/deliveries/:param1/retry",
                "/api/v1/webhook-subscriptions/{id}/deliveries/{deliveryId}/retry",
            ),
            ("/api/v1/integrations", "/api/v1/integrations"),
            ("/docs/*path", "/docs/{*path}"),
        ] {
            assert_eq!(documented(template(pattern)), want, "{pattern}");
        }
    }

    #[test]
    fn invented_methods_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "_OTHER");
    }
}
