//! Metrics of event delivery, on the process-wide OpenTelemetry meter.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};

use super::incidents::DomainKind;

struct Instruments {
    written: Counter<u64>,
    deliveries: Counter<u64>,
    delay: Histogram<f64>,
    published: Counter<u64>,
    incidents_open: UpDownCounter<i64>,
    incidents_opened: Counter<u64>,
    incident_members: UpDownCounter<i64>,
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
            incidents_open: meter
                .i64_up_down_counter("integration_incidents_open")
                .with_description(
                    "Incidents open, by failure domain kind (provider, vault, egress).",
                )
                .build(),
            incidents_opened: meter
                .u64_counter("integration_incidents_opened_total")
                .with_description("Incidents opened, by failure domain kind.")
                .build(),
            incident_members: meter
                .i64_up_down_counter("integration_incident_members")
                .with_description("Members of the open incidents, by failure domain kind.")
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

/// An incident opened with `members` members.
pub fn incident_opened(kind: DomainKind, members: usize) {
    let i = instruments();
    let attrs = [KeyValue::new("domain_kind", kind.as_str())];
    i.incidents_opened.add(1, &attrs);
    i.incidents_open.add(1, &attrs);
    i.incident_members.add(members as i64, &attrs);
}

/// Members joined (positive) an open incident.
pub fn incident_members(kind: DomainKind, delta: i64) {
    if delta != 0 {
        instruments()
            .incident_members
            .add(delta, &[KeyValue::new("domain_kind", kind.as_str())]);
    }
}

/// An incident with `members` members resolved.
pub fn incident_resolved(kind: DomainKind, members: usize) {
    let i = instruments();
    let attrs = [KeyValue::new("domain_kind", kind.as_str())];
    i.incidents_open.add(-1, &attrs);
    i.incident_members.add(-(members as i64), &attrs);
}

/// An incident left open by a previous run, taken back at start-up.
pub fn incident_adopted(kind: DomainKind, members: usize) {
    let i = instruments();
    let attrs = [KeyValue::new("domain_kind", kind.as_str())];
    i.incidents_open.add(1, &attrs);
    i.incident_members.add(members as i64, &attrs);
}
