//! Jaeger v2, as `.ci/services` starts it: the collector the processes export to, and
//! its query API to read a trace back, as an operator would look it up.
//!
//! | variable | what |
//! | --- | --- |
//! | `OXCART_TEST_JAEGER` | the query API, `http://127.0.0.1:16686` |
//! | `OXCART_TEST_OTLP_HTTP`, `…_GRPC` | its OTLP receiver, plain |
//! | `OXCART_TEST_OTLP_HTTPS`, `…_GRPCS` | its OTLP receiver, TLS (the test CA's certificate) |

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize;

use crate::otlp::{Span, Traces, spans_of};
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
}

impl Traces for Jaeger {
    /// What Jaeger has of the trace: nothing until it has a span.
    async fn spans_of(&self, trace_id: &str) -> Vec<Span> {
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
}
