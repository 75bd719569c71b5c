//! Where events meet traces.
//!
//! Appending is *producing*: the append gets a producer span, and each event records that
//! span's W3C `traceparent` in its metadata (unless it already carries one). Consuming
//! continues it: the consumer's span for an event is a child of the span that appended
//! it. Events travel in the store (the embedded log) or in Kafka, whose relay passes the
//! context on in the message's `traceparent` header; either way one trace follows an
//! order from its `POST` through stock, payment, e-mail and invoice.

use oxcart_telemetry::context;
use tracing::Span;

use crate::bus::topic_of;
use crate::envelope::{NewEvent, RecordedEvent};

/// The producer span of one append: `append order.created`.
pub fn append_span(events: &[NewEvent]) -> Span {
    let first = events.first();
    let event_type = first.map_or("", |e| e.event_type.as_str());
    let aggregate_type = first.map_or("", |e| e.aggregate_type.as_str());
    tracing::info_span!(
        "append",
        otel.name = %format!("append {event_type}"),
        otel.kind = "producer",
        messaging.system = "oxcart",
        messaging.operation.type = "send",
        messaging.destination.name = topic_of(aggregate_type),
        messaging.message.id = %first.map(|e| e.event_id.to_string()).unwrap_or_default(),
        messaging.batch.message_count = events.len(),
        oxcart.event.type = event_type,
        oxcart.aggregate.id = %first.map(|e| e.aggregate_id.to_string()).unwrap_or_default(),
    )
}

/// Gives each event without a trace context the one of `span`, the append's own span.
pub fn stamp(span: &Span, events: &mut [NewEvent]) {
    let Some(traceparent) = context::traceparent(span) else {
        return;
    };
    for event in events {
        event
            .metadata
            .traceparent
            .get_or_insert_with(|| traceparent.clone());
    }
}

/// The consumer span of one attempt at one event, a child of the span that produced it:
/// `process order.created`, for group `payment-service`.
pub fn process_span(group: &str, event: &RecordedEvent, attempt: u32) -> Span {
    let e = &event.event;
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("process {}", e.event_type),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        messaging.system = "oxcart",
        messaging.operation.type = "process",
        messaging.destination.name = topic_of(&e.aggregate_type),
        messaging.consumer.group.name = group,
        messaging.message.id = %e.event_id,
        oxcart.event.type = %e.event_type,
        oxcart.event.position = event.position,
        oxcart.aggregate.id = %e.aggregate_id,
        oxcart.attempt = attempt,
    );
    context::continue_trace(&span, e.metadata.traceparent.as_deref());
    span
}

/// Marks a span as failed, with a short description of why.
pub fn failed(span: &Span, error: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", error);
}
