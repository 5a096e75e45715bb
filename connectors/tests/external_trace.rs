//! A plugin call carries the caller's trace on, as `params.traceparent` (`docs/plugins.md`),
//! from a `plugin_call` span that is a child of the caller's; without a trace, nothing.

mod external_support;

use connectors::external::protocol::method;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use external_support::{fast_settings, fixture, obj, plugin};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_plugin_call_carries_the_trace_of_its_caller() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    // INFO, as the daemon's default filter: a call outside any trace (a scheduled check's)
    // has a DEBUG span, not recorded, so no trace.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // The current-thread runtime runs the call's task on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let echo = plugin(&fixture("echo-traceparent"), fast_settings());

    // Outside any trace: no traceparent.
    let report = echo
        .health_call(method::CHECK_HEALTH, "t", &obj(json!({})), None)
        .await;
    assert_eq!(report.message.as_deref(), Some("traceparent=none"));

    let mut headers = HeaderMap::new();
    headers.insert(
        connectors::trace::TRACEPARENT,
        HeaderValue::from_str(&format!("00-{TRACE_ID}-{CALLER_SPAN}-01")).unwrap(),
    );
    let request = tracing::info_span!("request");
    request
        .set_parent(connectors::trace::extract(&headers))
        .unwrap();
    let report = echo
        .health_call(method::CHECK_HEALTH, "t", &obj(json!({})), None)
        .instrument(request)
        .await;
    let message = report.message.unwrap_or_default();
    let sent = message.strip_prefix("traceparent=").unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{message}");
    assert_eq!(parts[1], TRACE_ID, "{message}");
    assert_ne!(
        parts[2], CALLER_SPAN,
        "the plugin_call span's own id: {message}"
    );
}
