//! W3C trace context (`traceparent`) in and out of the places work crosses a boundary:
//! HTTP headers, events in the store, Kafka message headers.
//!
//! A span made by a caller, a producer or an HTTP client is the parent of the span made
//! on the other side, so one trace follows an order from its `POST` through every
//! consumer. When telemetry is not initialised (unit tests, in-process API tests), every
//! function here is a harmless no-op: no context goes out and none comes in.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header and metadata key, as the W3C Trace Context specification names it.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, for a message or request that continues its trace.
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the span the caller is in.
pub fn current_traceparent() -> Option<String> {
    traceparent(&Span::current())
}

/// Makes `span` a child of the remote span `traceparent` names. A value that is not a
/// valid `traceparent` is ignored, and `span` starts a trace of its own.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        adopt(span, &Single(traceparent));
    }
}

/// Makes `span` a child of the caller that sent `headers`, if they carry a trace context.
pub fn continue_from_headers(span: &Span, headers: &http::HeaderMap) {
    adopt(span, &Headers(headers));
}

/// Gives `span` the remote parent `carrier` names, if it names a valid one.
fn adopt(span: &Span, carrier: &dyn Extractor) {
    let parent = extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace id of the current span when it is sampled, for exemplars: an exemplar
/// pointing at a trace that was never exported would lead nowhere.
pub fn current_trace_id() -> Option<String> {
    let cx = Span::current().context();
    let span = cx.span();
    let ids = span.span_context();
    (ids.is_valid() && ids.is_sampled()).then(|| ids.trace_id().to_string())
}

fn extract(carrier: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

struct Single<'a>(&'a str);

impl Extractor for Single<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced<T>(body: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, body)
    }

    #[test]
    fn a_child_continues_the_remote_trace_and_passes_on_its_own_span() {
        traced(|| {
            let span = tracing::info_span!("consume");
            continue_trace(&span, Some(REMOTE));
            let out = span.in_scope(current_traceparent).unwrap();
            let parts: Vec<&str> = out.split('-').collect();
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
            assert_ne!(parts[2], "00f067aa0ba902b7", "its own span id");
            assert_eq!(parts[3], "01", "still sampled");
        });
    }

    #[test]
    fn garbage_starts_a_new_trace() {
        traced(|| {
            let span = tracing::info_span!("consume");
            continue_trace(&span, Some("not-a-traceparent"));
            let out = span.in_scope(current_traceparent).unwrap();
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }

    #[test]
    fn without_telemetry_nothing_goes_out() {
        let span = tracing::info_span!("consume");
        continue_trace(&span, Some(REMOTE));
        assert_eq!(span.in_scope(current_traceparent), None);
        assert_eq!(span.in_scope(current_trace_id), None);
    }
}
