//! Metrics of event delivery, on the process-wide OpenTelemetry meter.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

struct Instruments {
    written: Counter<u64>,
    deliveries: Counter<u64>,
    delay: Histogram<f64>,
    published: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("stella-integrations");
        Instruments {
            written: meter
                .u64_counter("integration_events_written")
                .with_unit("{event}")
                .with_description("Health events appended to the outbox.")
                .build(),
            deliveries: meter
                .u64_counter("integration_event_deliveries")
                .with_unit("{delivery}")
                .with_description("Webhook delivery attempts by result (delivered, failed, dead).")
                .build(),
            delay: meter
                .f64_histogram("integration_event_delivery_delay_seconds")
                .with_unit("s")
                .with_description("Time from an event to its successful delivery, in seconds.")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
                ])
                .build(),
            published: meter
                .u64_counter("integration_events_published")
                .with_unit("{event}")
                .with_description("Events handed on by a relay, by channel (webhooks, nats).")
                .build(),
        }
    })
}

pub fn events_written(n: usize) {
    if n > 0 {
        instruments().written.add(n as u64, &[]);
    }
}

/// A webhook delivery attempt ended: `delivered`, `failed` (to be retried) or `dead`.
pub fn delivery(result: &'static str) {
    instruments()
        .deliveries
        .add(1, &[KeyValue::new("result", result)]);
}

/// An event was delivered `seconds` after it happened.
pub fn delivery_delay(seconds: f64) {
    instruments().delay.record(seconds, &[]);
}

/// A relay handed on `n` events on `channel`.
pub fn published(channel: &'static str, n: usize) {
    if n > 0 {
        instruments()
            .published
            .add(n as u64, &[KeyValue::new("channel", channel)]);
    }
}
