//! `/metrics`: the OpenTelemetry SDK's metrics as Prometheus text.
//!
//! The instruments are OpenTelemetry's, so that one set of numbers feeds both `/metrics` and
//! OTLP. A [`ManualReader`] collects them at each scrape (cumulative, as Prometheus wants),
//! [`families`] maps them onto Prometheus metric families after the OpenTelemetry
//! compatibility rules, and the `prometheus` crate's text encoder (format 0.0.4, what every
//! scraper and `promtool` read) writes them out. This replaces `opentelemetry-prometheus`,
//! whose development upstream has stopped; the mapping is small enough to own.
//!
//! The mapping:
//! - a name's characters outside `[a-zA-Z0-9_:]` become `_` (`http.server.request.duration`
//!   is `http_server_request_duration`);
//! - the unit, when it is one Prometheus names (`s`, `ms`, `By`), is appended as a suffix
//!   unless the name already ends with it (`_seconds`, `_milliseconds` or `_ms`, `_bytes`);
//! - monotonic sums are counters and end in `_total`; other sums and gauges are gauges;
//!   histograms are histograms (exponential ones are not used and not exported);
//! - attribute keys become label names the same way as metric names;
//! - the resource is one `target_info` gauge, its attributes as labels.
//!
//! Two instruments that map onto one name with different types keep the first; the output
//! is sorted, so two scrapes of the same state read the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Gauge, Histogram, Metric as OtelMetric, MetricData, ResourceMetrics, Sum,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// The name of the gauge that carries the resource's attributes.
const TARGET_INFO: &str = "target_info";

/// Reads the process's metrics at each scrape and renders them as Prometheus text. Made with
/// its [`MetricReader`] by [`reader`].
#[derive(Debug, Clone)]
pub struct Exposition {
    reader: Arc<ManualReader>,
}

/// The reader to install on the meter provider; it hands the metrics to the [`Exposition`]
/// made with it.
#[derive(Debug)]
pub struct Reader(Arc<ManualReader>);

/// A reader for the meter provider and the exposition that scrapes through it.
pub fn reader() -> (Reader, Exposition) {
    let manual = Arc::new(
        ManualReader::builder()
            .with_temporality(Temporality::Cumulative)
            .build(),
    );
    (
        Reader(manual.clone()),
        Exposition {
            reader: manual.clone(),
        },
    )
}

impl MetricReader for Reader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    /// Prometheus counters and histograms are cumulative.
    fn temporality(&self, _kind: InstrumentKind) -> Temporality {
        Temporality::Cumulative
    }
}

impl Exposition {
    /// The metrics now, in the Prometheus text format (0.0.4). Empty when they cannot be
    /// collected (the provider was shut down); the reason is logged.
    pub fn render(&self) -> String {
        let mut collected = ResourceMetrics::default();
        if let Err(error) = self.reader.collect(&mut collected) {
            tracing::warn!(message = "Collecting metrics failed.", %error);
            return String::new();
        }
        let families = families(&collected);
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| {
                tracing::warn!(message = "Encoding metrics failed.", %error);
                String::new()
            })
    }
}

/// Prometheus metric families of `collected`, sorted by name, each family's series by labels.
pub fn families(collected: &ResourceMetrics) -> Vec<MetricFamily> {
    let mut out: BTreeMap<String, MetricFamily> = BTreeMap::new();
    if let Some(info) = target_info(collected.resource()) {
        out.insert(TARGET_INFO.to_owned(), info);
    }
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            let Some((kind, series)) = series(metric) else {
                continue;
            };
            let name = family_name(metric.name(), metric.unit(), kind == MetricType::COUNTER);
            let family = out.entry(name.clone()).or_insert_with(|| {
                let mut family = MetricFamily::default();
                family.set_name(name.clone());
                family.set_help(metric.description().to_owned());
                family.set_field_type(kind);
                family
            });
            if family.get_field_type() != kind {
                tracing::debug!(
                    message = "Two instruments map onto one metric name with different types; the first is kept.",
                    metric = %name,
                );
                continue;
            }
            family.mut_metric().extend(series);
        }
    }
    out.into_values()
        .filter(|family| !family.get_metric().is_empty())
        .map(|mut family| {
            family.mut_metric().sort_by(|a, b| {
                let key = |m: &proto::Metric| {
                    m.get_label()
                        .iter()
                        .map(|l| (l.name().to_owned(), l.value().to_owned()))
                        .collect::<Vec<_>>()
                };
                key(a).cmp(&key(b))
            });
            family
        })
        .collect()
}

/// The Prometheus name of an instrument (see the module's documentation).
pub fn family_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out = sanitize(name);
    let (suffix, also) = match unit {
        "s" => ("seconds", None),
        "ms" => ("milliseconds", Some("ms")),
        "By" => ("bytes", None),
        _ => ("", None),
    };
    let ends_with = |out: &str, s: &str| out.len() > s.len() && out.ends_with(&format!("_{s}"));
    if !suffix.is_empty()
        && !ends_with(&out, suffix)
        && !also.is_some_and(|also| ends_with(&out, also))
    {
        out.push('_');
        out.push_str(suffix);
    }
    if counter && !ends_with(&out, "total") {
        out.push_str("_total");
    }
    out
}

/// A metric or label name with every character Prometheus does not allow made `_`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Vec<LabelPair> {
    let mut labels: Vec<LabelPair> = Vec::new();
    for kv in attributes {
        let name = sanitize(kv.key.as_str()).replace(':', "_");
        if labels.iter().any(|l| l.name() == name) {
            continue;
        }
        let mut pair = LabelPair::default();
        pair.set_name(name);
        pair.set_value(kv.value.as_str().into_owned());
        labels.push(pair);
    }
    labels.sort_by(|a, b| a.name().cmp(b.name()));
    labels
}

fn target_info(resource: &Resource) -> Option<MetricFamily> {
    if resource.is_empty() {
        return None;
    }
    let attributes: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let mut gauge = proto::Gauge::default();
    gauge.set_value(1.0);
    let mut metric = proto::Metric::from_label(labels(attributes.iter()));
    metric.set_gauge(gauge);
    let mut family = MetricFamily::default();
    family.set_name(TARGET_INFO.to_owned());
    family.set_help("Target metadata: the OpenTelemetry resource of this process.".to_owned());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(vec![metric]);
    Some(family)
}

/// A number as Prometheus carries it (a float: exact up to 2^53).
trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

impl AsF64 for u64 {
    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for i64 {
    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

/// The family type and the series of one instrument; `None` for what is not exported.
fn series(metric: &OtelMetric) -> Option<(MetricType, Vec<proto::Metric>)> {
    match metric.data() {
        AggregatedMetrics::F64(data) => series_of(data),
        AggregatedMetrics::I64(data) => series_of(data),
        AggregatedMetrics::U64(data) => series_of(data),
    }
}

fn series_of<T: AsF64>(data: &MetricData<T>) -> Option<(MetricType, Vec<proto::Metric>)> {
    match data {
        MetricData::Gauge(gauge) => Some((MetricType::GAUGE, gauges(gauge))),
        MetricData::Sum(sum) => Some(sums(sum)),
        MetricData::Histogram(histogram) => Some((MetricType::HISTOGRAM, histograms(histogram))),
        MetricData::ExponentialHistogram(_) => None,
    }
}

fn gauges<T: AsF64>(gauge: &Gauge<T>) -> Vec<proto::Metric> {
    gauge
        .data_points()
        .map(|point| {
            let mut value = proto::Gauge::default();
            value.set_value(point.value().as_f64());
            let mut metric = proto::Metric::from_label(labels(point.attributes()));
            metric.set_gauge(value);
            metric
        })
        .collect()
}

fn sums<T: AsF64>(sum: &Sum<T>) -> (MetricType, Vec<proto::Metric>) {
    let counter = sum.is_monotonic();
    let series = sum
        .data_points()
        .map(|point| {
            let mut metric = proto::Metric::from_label(labels(point.attributes()));
            if counter {
                let mut value = proto::Counter::default();
                value.set_value(point.value().as_f64());
                metric.set_counter(value);
            } else {
                let mut value = proto::Gauge::default();
                value.set_value(point.value().as_f64());
                metric.set_gauge(value);
            }
            metric
        })
        .collect();
    let kind = if counter {
        MetricType::COUNTER
    } else {
        MetricType::GAUGE
    };
    (kind, series)
}

fn histograms<T: AsF64>(histogram: &Histogram<T>) -> Vec<proto::Metric> {
    histogram
        .data_points()
        .map(|point| {
            // OpenTelemetry counts per bucket (the last one above every bound); Prometheus
            // counts cumulatively per upper bound, `+Inf` being the total the encoder adds.
            let mut cumulative = 0;
            let buckets = point
                .bounds()
                .zip(point.bucket_counts())
                .map(|(bound, count)| {
                    cumulative += count;
                    let mut bucket = proto::Bucket::default();
                    bucket.set_upper_bound(bound);
                    bucket.set_cumulative_count(cumulative);
                    bucket
                })
                .collect();
            let mut value = proto::Histogram::default();
            value.set_sample_count(point.count());
            value.set_sample_sum(point.sum().as_f64());
            value.set_bucket(buckets);
            let mut metric = proto::Metric::from_label(labels(point.attributes()));
            metric.set_histogram(value);
            metric
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        for (name, unit, counter, want) in [
            (
                "http.server.request.duration",
                "s",
                false,
                "http_server_request_duration_seconds",
            ),
            (
                "integration_schedule_lag_seconds",
                "s",
                false,
                "integration_schedule_lag_seconds",
            ),
            (
                "integration_health_latency_ms",
                "ms",
                false,
                "integration_health_latency_ms",
            ),
            ("rtt", "ms", false, "rtt_milliseconds"),
            ("process_heap_bytes", "By", false, "process_heap_bytes"),
            ("heap", "By", false, "heap_bytes"),
            (
                "integration_crud",
                "{change}",
                true,
                "integration_crud_total",
            ),
            ("already_total", "", true, "already_total"),
            ("total", "", true, "total_total"),
            ("seconds", "s", false, "seconds_seconds"),
            ("queued", "{result}", false, "queued"),
            ("9lives", "", false, "_9lives"),
            ("a-b c", "", false, "a_b_c"),
        ] {
            assert_eq!(
                family_name(name, unit, counter),
                want,
                "{name} {unit} {counter}"
            );
        }
    }

    /// Every kind of instrument the daemon uses, through the real SDK and the text encoder.
    #[test]
    fn the_sdk_metrics_become_prometheus_text() {
        let (reader, exposition) = reader();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", "stella-integrations"),
                        KeyValue::new("service.instance.id", "hub-a"),
                    ])
                    .build(),
            )
            .build();
        let meter = provider.meter("test");
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        let route = |r: &'static str| {
            [
                KeyValue::new("http.route", r),
                KeyValue::new("http.response.status_code", 200),
            ]
        };
        duration.record(0.05, &route("/a/:id"));
        duration.record(0.5, &route("/a/:id"));
        duration.record(5.0, &route("/a/:id"));
        duration.record(0.01, &route("/b"));
        let crud = meter
            .u64_counter("integration_crud")
            .with_description("Changes.")
            .build();
        crud.add(2, &[KeyValue::new("action", "create")]);
        let status = meter
            .i64_up_down_counter("integration_health_status")
            .with_description("By status.")
            .build();
        status.add(3, &[KeyValue::new("status", "healthy")]);
        status.add(-1, &[KeyValue::new("status", "healthy")]);
        let _gauge = meter
            .u64_observable_gauge("process_heap_bytes")
            .with_unit("By")
            .with_description("Heap.")
            .with_callback(|o| o.observe(42, &[KeyValue::new("state", "allocated")]))
            .build();
        // Declared but never recorded: no family (an empty one would fail the encoder).
        let _idle = meter.u64_counter("integration_idle").build();

        let text = exposition.render();
        let want = [
            "# HELP http_server_request_duration_seconds Duration of HTTP server requests.",
            "# TYPE http_server_request_duration_seconds histogram",
            r#"http_server_request_duration_seconds_bucket{http_response_status_code="200",http_route="/a/:id",le="0.1"} 1"#,
            r#"http_server_request_duration_seconds_bucket{http_response_status_code="200",http_route="/a/:id",le="1"} 2"#,
            r#"http_server_request_duration_seconds_bucket{http_response_status_code="200",http_route="/a/:id",le="+Inf"} 3"#,
            r#"http_server_request_duration_seconds_sum{http_response_status_code="200",http_route="/a/:id"} 5.55"#,
            r#"http_server_request_duration_seconds_count{http_response_status_code="200",http_route="/a/:id"} 3"#,
            r#"http_server_request_duration_seconds_bucket{http_response_status_code="200",http_route="/b",le="0.1"} 1"#,
            "# TYPE integration_crud_total counter",
            r#"integration_crud_total{action="create"} 2"#,
            "# TYPE integration_health_status gauge",
            r#"integration_health_status{status="healthy"} 2"#,
            "# TYPE process_heap_bytes gauge",
            r#"process_heap_bytes{state="allocated"} 42"#,
            "# TYPE target_info gauge",
            r#"target_info{service_instance_id="hub-a",service_name="stella-integrations"} 1"#,
        ];
        for line in want {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in\n{text}");
        }
        assert!(!text.contains("integration_idle"), "{text}");
        // Sorted by name: two scrapes of one state read the same.
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(text, exposition.render());
    }

    #[test]
    fn a_type_conflict_keeps_the_first_instrument() {
        let (reader, exposition) = reader();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        let meter = provider.meter("test");
        // `x` (a counter, so `x_total`) and a gauge named `x_total`.
        meter.u64_counter("x").build().add(1, &[]);
        meter.i64_gauge("x_total").build().record(7, &[]);
        let text = exposition.render();
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with("x_total")).collect();
        assert_eq!(samples.len(), 1, "{text}");
        assert!(text.contains("# TYPE x_total"), "{text}");
    }
}
