//! Logs, metrics and traces.
//!
//! Logs: text for people, JSON for pipelines, filtered by a `tracing` directive. Metrics: one
//! process-wide OpenTelemetry meter provider feeds both `/metrics` (Prometheus text) and, when
//! an endpoint is configured, OTLP. Traces: spans (health checks, plugin calls, catalog
//! changes, requests) go to OTLP when configured.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::{Encoder, TextEncoder};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// How often metrics are pushed over OTLP.
const OTLP_METRICS_EVERY: Duration = Duration::from_secs(30);

/// Changes the log filter of the installed subscriber, for [`set_filter`].
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (logs, and traces over OTLP when configured). Later calls do
/// nothing.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) {
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let otel = telemetry.otlp_endpoint.as_deref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|error| eprintln!("OTLP trace export disabled: {error}"))
            .ok()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("stella-integrations");
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Why the log filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid [log] filter")]
    Invalid(#[from] tracing_subscriber::filter::ParseError),
    #[error("changing the log filter")]
    Reload(#[from] reload::Error),
}

/// Whether `directive` is a valid log filter.
///
/// # Errors
/// [`FilterError::Invalid`].
pub fn check_filter(directive: &str) -> Result<(), FilterError> {
    EnvFilter::try_new(directive)?;
    Ok(())
}

/// Replaces the log filter of the subscriber [`init`] installed (nothing without one).
///
/// # Errors
/// A directive that does not parse; then the filter stays.
pub fn set_filter(directive: &str) -> Result<(), FilterError> {
    let filter = EnvFilter::try_new(directive)?;
    if let Some(handle) = FILTER.get() {
        handle.reload(filter)?;
    }
    Ok(())
}

/// The process-wide metrics registry behind `/metrics`. The first call installs the meter
/// provider (with OTLP export when `telemetry` names an endpoint); the daemon makes it before
/// any instrument exists.
pub fn metrics(telemetry: &TelemetryConfig) -> &'static prometheus::Registry {
    static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let mut builder = SdkMeterProvider::builder();
        match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
        {
            Ok(exporter) => builder = builder.with_reader(exporter),
            Err(error) => eprintln!("Prometheus metrics disabled: {error}"),
        }
        if let Some(endpoint) = telemetry.otlp_endpoint.as_deref() {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/metrics", endpoint.trim_end_matches('/')))
                .build()
            {
                Ok(exporter) => {
                    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                        .with_interval(OTLP_METRICS_EVERY)
                        .build();
                    builder = builder.with_reader(reader);
                }
                Err(error) => eprintln!("OTLP metrics export disabled: {error}"),
            }
        }
        opentelemetry::global::set_meter_provider(builder.build());
        heap_gauge();
        registry
    })
}

/// `process_heap_bytes{state}`: the allocator's own account of the heap, read at collection.
/// `allocated` is what the program holds; `active` the pages those allocations sit on;
/// `resident` what of the allocator's memory is in RAM (it includes freed pages not yet given
/// back); `retained` address space kept for reuse, not in RAM. The gap between the process's
/// RSS and `resident` is code, stacks and memory not from the heap.
fn heap_gauge() {
    use tikv_jemalloc_ctl::{epoch, stats};
    static GAUGE: OnceLock<opentelemetry::metrics::ObservableGauge<u64>> = OnceLock::new();
    GAUGE.get_or_init(|| {
        opentelemetry::global::meter("stella-integrations")
            .u64_observable_gauge("process_heap_bytes")
            .with_description("Heap memory by allocator state (jemalloc statistics), in bytes.")
            .with_callback(|observer| {
                // The statistics are a snapshot, refreshed when the epoch advances.
                if epoch::advance().is_err() {
                    return;
                }
                let states = [
                    ("allocated", stats::allocated::read()),
                    ("active", stats::active::read()),
                    ("resident", stats::resident::read()),
                    ("metadata", stats::metadata::read()),
                    ("retained", stats::retained::read()),
                ];
                for (state, bytes) in states {
                    if let Ok(bytes) = bytes {
                        observer.observe(bytes as u64, &[KeyValue::new("state", state)]);
                    }
                }
            })
            .build()
    });
}

/// The metrics in Prometheus text format.
pub fn render(registry: &prometheus::Registry) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
