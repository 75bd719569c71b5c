//! Jaeger v2, as `.ci/services` starts it: the collector the processes export to, and
//! its query API to read a trace back, as an operator would look it up.
//!
//! | variable | what |
//! | --- | --- |
//! | `OXCART_TEST_JAEGER` | the query API, `http://127.0.0.1:16686` |
//! | `OXCART_TEST_OTLP_HTTP`, `…_GRPC` | its OTLP receiver, plain |
//! | `OXCART_TEST_OTLP_HTTPS`, `…_GRPCS` | its OTLP receiver, TLS (the test CA's certificate) |

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize;

use crate::otlp::{Span, Trace, await_trace, spans_of};
use crate::services::var;

pub struct Jaeger {
    query: String,
    http: reqwest::Client,
}

/// `GET /api/v3/traces/{id}` answers the trace as OTLP JSON.
#[derive(Deserialize)]
struct Answer {
    result: ExportTraceServiceRequest,
}

impl Jaeger {
    pub fn from_env() -> Self {
        Self {
            query: var("OXCART_TEST_JAEGER"),
            http: reqwest::Client::new(),
        }
    }

    /// What Jaeger has of trace `trace_id` (lowercase hex): nothing until it has a span.
    pub async fn trace(&self, trace_id: &str) -> Vec<Span> {
        let url = format!("{}/api/v3/traces/{trace_id}", self.query);
        let reply = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Jaeger's query API at {url}: {e}"));
        if reply.status() == reqwest::StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert!(
            reply.status().is_success(),
            "{url} answered {}",
            reply.status()
        );
        let answer: Answer = reply
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: not a trace: {e}"));
        spans_of(answer.result)
    }

    /// Waits up to `within` for the trace to hold what `done` wants and to be whole
    /// (see [`await_trace`]).
    pub async fn whole_trace(
        &self,
        trace_id: &str,
        remote_parent: &str,
        within: Duration,
        done: impl Fn(&Trace) -> bool,
    ) -> Trace {
        await_trace(|| self.trace(trace_id), remote_parent, within, done).await
    }
}
