//! W3C Trace Context on the calls the hub makes and the requests it serves.
//!
//! The propagator is the process-wide one (`opentelemetry::global`, installed by the daemon
//! at start-up: `traceparent`/`tracestate`); without it nothing is written or read. The
//! context is that of the current `tracing` span, which the daemon's subscriber links to
//! OpenTelemetry. Every outbound call carries it: provider calls through
//! [`Outbound::send`](crate::outbound::Outbound::send), Vault and OpenBao, webhook
//! deliveries, and plugin calls (as `params.traceparent`, `docs/plugins.md`).

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header a trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

/// Adds the current span's trace context to `headers` (a `traceparent`, and a `tracestate`
/// when there is one). Nothing when the current span belongs to no trace.
pub fn inject(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// The current span's trace context as headers, for a request builder's `.headers(…)`.
pub fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    headers
}

/// The current span's `traceparent`, if it belongs to a trace.
pub fn traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The trace context a request's headers carry (an empty context when there is none or it
/// does not parse: the request then starts a trace of its own).
pub fn extract(headers: &HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A request's trace goes on to the calls made under it; without one, nothing is sent.
    #[test]
    fn the_trace_of_a_request_reaches_its_calls() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            // Outside any span: no header.
            assert_eq!(traceparent(), None);
            assert!(headers().is_empty());

            let mut incoming = HeaderMap::new();
            incoming.insert(TRACEPARENT, HeaderValue::from_static(CALLER));
            let span = tracing::info_span!("request");
            span.set_parent(extract(&incoming)).unwrap();
            let sent = span.in_scope(traceparent).expect("a traceparent");
            let parts: Vec<&str> = sent.split('-').collect();
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
            assert_ne!(
                parts[2], "00f067aa0ba902b7",
                "our own span, not the caller's"
            );
            assert_eq!(parts[3], "01", "sampled, as the caller asked");

            // A malformed header is no trace: the span starts its own.
            let mut garbage = HeaderMap::new();
            garbage.insert(TRACEPARENT, HeaderValue::from_static("00-zz-zz-01"));
            assert!(!extract(&garbage).span().span_context().is_valid());
            let own = tracing::info_span!("request");
            own.set_parent(extract(&garbage)).unwrap();
            let sent = own.in_scope(traceparent).expect("a traceparent");
            assert!(!sent.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{sent}");
        });
    }
}
