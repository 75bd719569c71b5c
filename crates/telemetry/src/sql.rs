//! Database spans: each SQL statement sqlx runs becomes a client span.
//!
//! sqlx reports every statement it finishes as a `sqlx::query` event carrying its text
//! and how long it took. This layer turns that event into a span, back-dated to when the
//! statement started, under the span that ran it (the handler, the request). A
//! statement run outside any traced span (a background sampler) is not traced.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::SubscriberHandle;

/// The target of sqlx's statement events.
pub(crate) const TARGET: &str = "sqlx::query";

pub(crate) struct StatementSpans {
    tracer: SdkTracer,
    system: Option<&'static str>,
    subscriber: SubscriberHandle,
}

impl StatementSpans {
    pub(crate) fn new(
        tracer: SdkTracer,
        system: Option<&'static str>,
        subscriber: SubscriberHandle,
    ) -> Self {
        Self {
            tracer,
            system,
            subscriber,
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for StatementSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let Some(parent) = ctx
            .event_scope(event)
            .and_then(|scope| self.subscriber.trace_context(scope))
        else {
            return;
        };
        let mut statement = Statement::default();
        event.record(&mut statement);
        let ended = SystemTime::now();
        let started = ended
            .checked_sub(Duration::from_secs_f64(statement.elapsed_secs.max(0.0)))
            .unwrap_or(ended);
        let summary = statement.summary.trim_end_matches(" …").trim();
        let text = match statement.text.trim() {
            "" => summary,
            text => text,
        };
        let mut attributes = vec![
            KeyValue::new("db.query.text", text.to_owned()),
            KeyValue::new(
                "db.operation.name",
                summary
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_uppercase(),
            ),
            KeyValue::new("db.response.returned_rows", statement.rows_returned),
        ];
        if let Some(system) = self.system {
            attributes.push(KeyValue::new("db.system.name", system));
        }
        let mut span = self
            .tracer
            .span_builder(span_name(text))
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(ended);
    }
}

/// `SELECT products`, `INSERT events`: the operation and the table, as the database
/// conventions name a span; the statement itself is the `db.query.text` attribute.
fn span_name(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let Some(operation) = words.first().map(|w| w.to_uppercase()) else {
        return "SQL".to_owned();
    };
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
    };
    let table = match operation.as_str() {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1),
        _ => None,
    };
    match table.map(|t| t.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))) {
        Some(table) if !table.is_empty() => format!("{operation} {table}"),
        _ => operation,
    }
}

/// The fields of sqlx's statement event.
#[derive(Default)]
struct Statement {
    summary: String,
    text: String,
    elapsed_secs: f64,
    rows_returned: i64,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.text),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::span_name;

    #[test]
    fn spans_are_named_by_operation_and_table() {
        assert_eq!(
            span_name("SELECT id, sku FROM products WHERE id = $1"),
            "SELECT products"
        );
        assert_eq!(
            span_name("INSERT INTO events (event_id, data) VALUES ($1, $2)"),
            "INSERT events"
        );
        assert_eq!(
            span_name("update payments SET status = $1"),
            "UPDATE payments"
        );
        assert_eq!(
            span_name("SELECT COALESCE(MAX(position), 0) FROM events"),
            "SELECT events"
        );
        assert_eq!(span_name("SELECT pg_advisory_xact_lock($1)"), "SELECT");
        assert_eq!(span_name("BEGIN"), "BEGIN");
    }
}
