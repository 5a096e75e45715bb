//! Logs, metrics and traces, after the OpenTelemetry and Prometheus conventions.
//!
//! - Logs: text for people (coloured only on a terminal), JSON for pipelines, filtered by a
//!   `tracing` directive that `SIGHUP` can change.
//! - Metrics: one process-wide OpenTelemetry meter provider feeds both `/metrics`
//!   (Prometheus text, [`exposition`]) and, when an endpoint is configured, OTLP. Durations
//!   are histograms in seconds named `…_seconds`, counters end in `_total`, every instrument
//!   states its unit.
//! - Traces: spans (requests, health checks, plugin calls and discovery, catalog changes) go
//!   to OTLP when configured. W3C Trace Context is always on, exporter or not: a request's
//!   `traceparent` is continued ([`crate::api::observe`]) and outbound calls carry one
//!   (`connectors::trace`).
//! - The resource: `service.name` (`stella-integrations`), `service.version`, and
//!   `service.instance.id`, the cluster replica id when `[cluster]` is on (else a random id
//!   for the life of the process); on `/metrics` it is the `target_info` series.
//!
//! # Layout
//! - `telemetry.rs`: set-up ([`init`], [`metrics`]), the resource, the log filter.
//! - `exposition.rs`: the OpenTelemetry metrics as Prometheus text.

pub mod exposition;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub use self::exposition::Exposition;
use crate::config::{Config, LogFormat};

/// The `service.name` of every span and metric.
pub const SERVICE_NAME: &str = "stella-integrations";

/// How often metrics are pushed over OTLP unless [`METRIC_EXPORT_INTERVAL_ENV`] says.
const OTLP_METRICS_EVERY: Duration = Duration::from_secs(30);

/// The OpenTelemetry variable for the metrics push interval, in milliseconds.
pub const METRIC_EXPORT_INTERVAL_ENV: &str = "OTEL_METRIC_EXPORT_INTERVAL";

/// Changes the log filter of the installed subscriber, for [`set_filter`].
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// This process's `service.instance.id`: the cluster replica id when `[cluster]` is on (the
/// same name the replica registers under), else a random UUID. Decided by the first call and
/// kept for the life of the process.
pub fn instance_id(config: &Config) -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        if config.cluster.enabled {
            config.cluster.replica_id()
        } else {
            uuid::Uuid::new_v4().to_string()
        }
    })
}

/// The OpenTelemetry resource of this process (see the module's documentation). Attributes
/// from `OTEL_RESOURCE_ATTRIBUTES` are kept unless they name one of the three set here.
pub fn resource(config: &Config) -> Resource {
    static RESOURCE: OnceLock<Resource> = OnceLock::new();
    RESOURCE
        .get_or_init(|| {
            Resource::builder()
                .with_service_name(SERVICE_NAME)
                .with_attributes([
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                    KeyValue::new("service.instance.id", instance_id(config)),
                ])
                .build()
        })
        .clone()
}

/// Installs the global subscriber (logs; spans with W3C Trace Context, exported over OTLP
/// when configured) and the `traceparent` propagator. Later calls do nothing.
pub fn init(config: &Config) {
    let (log, telemetry) = (&config.log, &config.telemetry);
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Spans get trace and span ids whether or not they are exported, so that a request's
    // `traceparent` reaches the calls it makes; without an exporter they go nowhere.
    let mut provider = SdkTracerProvider::builder().with_resource(resource(config));
    if let Some(endpoint) = telemetry.otlp_endpoint.as_deref() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
        {
            Ok(exporter) => provider = provider.with_batch_exporter(exporter),
            Err(error) => eprintln!("OTLP trace export disabled: {error}"),
        }
    }
    let provider = provider.build();
    let tracer = provider.tracer(SERVICE_NAME);
    opentelemetry::global::set_tracer_provider(provider);
    // Not ractor's own spans: one `Actor` span lives as long as each actor (a monitor per
    // integration), which would hold OpenTelemetry data a million times over on a large
    // fleet and export nothing useful; spans inside an actor take the nearest other span
    // (or none) as their parent.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter::filter_fn(|meta| {
            !meta.target().starts_with("ractor")
        }));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // Colour codes only where a person reads them: not in files, journals or pipes.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
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

/// The process-wide metrics behind `/metrics`. The first call installs the meter provider
/// (with OTLP export when configured); the daemon makes it before any instrument exists.
pub fn metrics(config: &Config) -> &'static Exposition {
    static EXPOSITION: OnceLock<Exposition> = OnceLock::new();
    EXPOSITION.get_or_init(|| {
        let (reader, exposition) = exposition::reader();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource(config))
            .with_reader(reader);
        if let Some(endpoint) = config.telemetry.otlp_endpoint.as_deref() {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/metrics", endpoint.trim_end_matches('/')))
                .build()
            {
                Ok(exporter) => {
                    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                        .with_interval(otlp_metrics_every())
                        .build();
                    builder = builder.with_reader(reader);
                }
                Err(error) => eprintln!("OTLP metrics export disabled: {error}"),
            }
        }
        opentelemetry::global::set_meter_provider(builder.build());
        heap_gauge();
        exposition
    })
}

/// The OTLP metrics push interval: [`METRIC_EXPORT_INTERVAL_ENV`] (milliseconds, at least
/// 100) or [`OTLP_METRICS_EVERY`].
fn otlp_metrics_every() -> Duration {
    std::env::var(METRIC_EXPORT_INTERVAL_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|&ms| ms >= 100)
        .map_or(OTLP_METRICS_EVERY, Duration::from_millis)
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
        opentelemetry::global::meter(SERVICE_NAME)
            .u64_observable_gauge("process_heap_bytes")
            .with_unit("By")
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
