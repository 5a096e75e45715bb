//! The health engine's metrics, on the process-wide OpenTelemetry meter (exported by the
//! daemon as Prometheus text at `/metrics` and over OTLP when configured).
//!
//! Durations are in seconds (`…_seconds`, unit `s`), as Prometheus and OpenTelemetry name
//! them. `integration_health_status` and `integration_health_latency_ms` keep the names the
//! platform's dashboards know; the latter has a twin in seconds,
//! `integration_health_latency_seconds`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, ObservableGauge, ObservableUpDownCounter, UpDownCounter,
};

struct Instruments {
    status: UpDownCounter<i64>,
    latency_ms: Histogram<f64>,
    latency: Histogram<f64>,
    monitors: UpDownCounter<i64>,
    /// Read from [`IN_FLIGHT`] at collection: two atomic adds per check instead of two
    /// instrument updates.
    _in_flight: ObservableUpDownCounter<i64>,
    lag: Histogram<f64>,
    restarts: Counter<u64>,
    batch: Histogram<u64>,
    /// Read from the [`WRITER`]'s channel at collection.
    _writer_queued: ObservableGauge<i64>,
    write: Histogram<f64>,
    checks: Counter<u64>,
    fenced: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("stella-integrations");
        Instruments {
            status: meter
                .i64_up_down_counter("integration_health_status")
                .with_unit("{integration}")
                .with_description("Monitored integrations by provider type, tenant and status.")
                .build(),
            latency_ms: meter
                .f64_histogram("integration_health_latency_ms")
                .with_unit("ms")
                .with_description(
                    "Latency of health checks, in milliseconds (integration_health_latency_seconds in seconds).",
                )
                .with_boundaries(vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                    10000.0,
                ])
                .build(),
            latency: meter
                .f64_histogram("integration_health_latency_seconds")
                .with_unit("s")
                .with_description("Latency of health checks, in seconds.")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            monitors: meter
                .i64_up_down_counter("integration_monitors_running")
                .with_unit("{monitor}")
                .with_description("Integration monitor actors running.")
                .build(),
            _in_flight: meter
                .i64_observable_up_down_counter("integration_checks_in_flight")
                .with_unit("{check}")
                .with_description("Health checks running now.")
                .with_callback(|observer| observer.observe(IN_FLIGHT.load(Ordering::Relaxed), &[]))
                .build(),
            lag: meter
                .f64_histogram("integration_schedule_lag_seconds")
                .with_unit("s")
                .with_description("How late scheduled checks start, in seconds.")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ])
                .build(),
            restarts: meter
                .u64_counter("integration_monitor_restarts")
                .with_unit("{restart}")
                .with_description("Monitors restarted by their supervisor after a crash.")
                .build(),
            batch: meter
                .u64_histogram("integration_health_writer_batch_size")
                .with_unit("{row}")
                .with_description("Rows per batch written by the health result writer.")
                .with_boundaries(vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0])
                .build(),
            _writer_queued: meter
                .i64_observable_gauge("integration_health_writer_queued")
                .with_unit("{row}")
                .with_description(
                    "Results and status changes waiting in the health result writer's queue.",
                )
                .with_callback(|observer| {
                    let writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
                    let queued = writer.as_ref().map_or(0, |depth| depth());
                    observer.observe(i64::try_from(queued).unwrap_or(i64::MAX), &[]);
                })
                .build(),
            write: meter
                .f64_histogram("integration_health_writer_write_seconds")
                .with_unit("s")
                .with_description(
                    "Time to write one batch of results, including retries, in seconds.",
                )
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                ])
                .build(),
            checks: meter
                .u64_counter("integration_health_checks")
                .with_unit("{check}")
                .with_description("Health checks completed, by provider type and result.")
                .build(),
            fenced: meter
                .u64_counter("integration_cluster_fenced_writes")
                .with_unit("{row}")
                .with_description(
                    "Results and status changes not written because this replica no longer owned their integration's shard.",
                )
                .build(),
        }
    })
}

/// Health checks running now.
static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// The queue depth of the result writer that `integration_health_writer_queued` reports: the
/// latest started (a daemon has one).
type QueueDepth = Box<dyn Fn() -> usize + Send>;
static WRITER: Mutex<Option<QueueDepth>> = Mutex::new(None);

/// Label values share the monitor's strings: building them allocates nothing.
fn labels(provider_type: &Arc<str>, tenant: &Arc<str>, status: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("type", provider_type.clone()),
        KeyValue::new("tenant", tenant.clone()),
        KeyValue::new("status", status),
    ]
}

/// An integration entered (`+1`) or left (`-1`) a status.
pub fn status(provider_type: &Arc<str>, tenant: &Arc<str>, status: &'static str, delta: i64) {
    instruments()
        .status
        .add(delta, &labels(provider_type, tenant, status));
}

/// A check ended with `result` after `latency`.
pub fn check_done(provider_type: &Arc<str>, result: &'static str, latency: Duration) {
    let i = instruments();
    let t = KeyValue::new("type", provider_type.clone());
    let seconds = latency.as_secs_f64();
    i.latency_ms
        .record(seconds * 1000.0, std::slice::from_ref(&t));
    i.latency.record(seconds, std::slice::from_ref(&t));
    i.checks.add(1, &[t, KeyValue::new("result", result)]);
}

pub fn monitors(delta: i64) {
    instruments().monitors.add(delta, &[]);
}

pub fn in_flight(delta: i64) {
    // The observable instrument that reports the count is registered with the others.
    instruments();
    IN_FLIGHT.fetch_add(delta, Ordering::Relaxed);
}

/// A scheduled check started `lag` after it was due.
pub fn schedule_lag(lag: Duration) {
    instruments().lag.record(lag.as_secs_f64(), &[]);
}

pub fn restart() {
    instruments().restarts.add(1, &[]);
}

/// One batch written: its rows, and how long it took to land.
pub fn writer_batch(rows: usize, took: Duration) {
    let i = instruments();
    i.batch.record(rows as u64, &[]);
    i.write.record(took.as_secs_f64(), &[]);
}

/// Rows dropped because their shard is no longer this replica's.
pub fn fenced(rows: u64) {
    instruments().fenced.add(rows, &[]);
}

/// Reports the result writer's queue depth, as `depth` reads it at each collection.
pub fn watch_writer(depth: impl Fn() -> usize + Send + 'static) {
    instruments();
    *WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(depth));
}
