//! Log lines: human-readable on a terminal, one JSON object per line otherwise, and
//! either way stamped with the trace and span they were logged in.
//!
//! Every line logged while handling a request or an event carries the span's fields
//! (`http.route`, `messaging.consumer.group.name`, …) and its `trace_id` and `span_id`, so
//! a line found in the logs leads straight to its trace, and back.

use std::io::IsTerminal;

use opentelemetry::trace::TraceContextExt as _;
use serde::{Deserialize, Serialize};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::SubscriberHandle;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

impl LogFormat {
    pub fn is_json(self) -> bool {
        match self {
            Self::Auto => !std::io::stderr().is_terminal(),
            Self::Pretty => false,
            Self::Json => true,
        }
    }
}

/// The formatting layer. Logs go to stderr, so that a command's own output on stdout
/// (`oxcart openapi > spec.json`) stays clean.
pub(crate) fn layer<S>(
    format: LogFormat,
    subscriber: SubscriberHandle,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format.is_json() {
        let json = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true);
        let format = WithTraceIds {
            inner: json,
            json: true,
            subscriber,
        };
        Box::new(layer.json().event_format(format))
    } else {
        let format = WithTraceIds {
            inner: tracing_subscriber::fmt::format().compact(),
            json: false,
            subscriber,
        };
        Box::new(layer.event_format(format))
    }
}

/// Wraps a formatter and adds the current span's trace and span ids to its line.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
    subscriber: SubscriberHandle,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // Read before formatting: the formatter borrows the span's extensions, and reading
        // the trace context borrows them mutably.
        let ids = ctx
            .event_scope()
            .and_then(|scope| self.subscriber.trace_context(scope))
            .map(|cx| cx.span().span_context().clone());
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        if !self.json {
            // Ahead of the line, so the formatter's colours and line end stay its own.
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        // `{"timestamp":…}` becomes `{"trace_id":…,"span_id":…,"timestamp":…}`.
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let rest = line.strip_prefix('{').unwrap_or(&line);
        write!(
            writer,
            "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
        )
    }
}
