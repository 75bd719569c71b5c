//! An OTLP trace receiver in the test process: what an OpenTelemetry Collector would see.
//!
//! It listens for OTLP over HTTP (`POST /v1/traces`, protobuf or JSON) and over gRPC
//! (`TraceService/Export`) on free ports, decodes the requests with the protocol's own
//! protobuf definitions, and keeps every span with its resource's `service.name`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::net::TcpListener;

/// One received span, flattened for assertions. Ids are lowercase hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_CONSUMER`, …
    pub kind: String,
    pub attributes: HashMap<String, String>,
    /// The trace ids of the spans this one links to.
    pub links: Vec<String>,
    /// 2 is an error.
    pub status_code: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    http: SocketAddr,
    grpc: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));

        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/v1/traces", post(export_http))
            .with_state(Arc::clone(&spans));
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http_listener, router).await;
        });

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let service = TraceServiceServer::new(Grpc(Arc::clone(&spans)));
        let grpc_task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            spans,
            http,
            grpc,
            tasks: vec![http_task, grpc_task],
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `http/protobuf` or `http/json`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `grpc`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

/// Where a test reads traces back: the receiver in the test, or a collector's store
/// (Jaeger).
#[allow(
    async_fn_in_trait,
    reason = "tests await these in place; no Send bound needed"
)]
pub trait Traces {
    /// The spans of trace `trace_id` (lowercase hex) there so far.
    async fn spans_of(&self, trace_id: &str) -> Vec<Span>;

    /// Waits up to `within` for the trace `trace_id` to hold what `done` wants and to be
    /// whole (every span's parent there, but for `remote_parent`, the caller's span): a
    /// parent ends after its children, so its span can come in a later batch. After
    /// `within`, returns what there is.
    async fn whole_trace(
        &self,
        trace_id: &str,
        remote_parent: &str,
        within: Duration,
        done: impl Fn(&Trace) -> bool,
    ) -> Trace {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let trace = Trace::new(self.spans_of(trace_id).await);
            if (done(&trace) && trace.is_whole(remote_parent))
                || tokio::time::Instant::now() >= deadline
            {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Traces for Receiver {
    async fn spans_of(&self, trace_id: &str) -> Vec<Span> {
        self.trace(trace_id)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn export_http(
    State(spans): State<Arc<Mutex<Vec<Span>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    };
    match request {
        Ok(request) => {
            spans.lock().unwrap().extend(spans_of(request));
            let (content_type, body) = if json {
                ("application/json", b"{}".to_vec())
            } else {
                (
                    "application/x-protobuf",
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body)
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            error.into_bytes(),
        ),
    }
}

struct Grpc(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .unwrap()
            .extend(spans_of(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The spans of an export request (or of anything shaped as one, such as Jaeger's
/// answer), flattened.
pub fn spans_of(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut kept = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let kind =
                    opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(span.kind)
                        .map(|k| k.as_str_name().to_owned())
                        .unwrap_or_default();
                kept.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind,
                    attributes: attributes(&span.attributes),
                    links: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                    status_code: span.status.map_or(0, |s| s.code),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    kept
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace, for following parent links.
pub struct Trace {
    pub spans: Vec<Span>,
}

impl Trace {
    pub fn new(spans: Vec<Span>) -> Self {
        Self { spans }
    }

    /// The span named `name` that `matches`; panics, showing the trace, if there is none.
    pub fn one(&self, name: &str, matches: impl Fn(&Span) -> bool) -> &Span {
        self.spans
            .iter()
            .find(|s| s.name == name && matches(s))
            .unwrap_or_else(|| {
                panic!(
                    "no span `{name}` as expected in the trace:\n{}",
                    self.tree()
                )
            })
    }

    /// Whether every span's parent is in the trace, but for `remote_parent`'s children.
    pub fn is_whole(&self, remote_parent: &str) -> bool {
        self.spans.iter().all(|s| {
            s.parent_span_id.is_empty()
                || s.parent_span_id == remote_parent
                || self.parent(s).is_some()
        })
    }

    /// Whether the trace has a span named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.spans.iter().any(|s| s.name == name)
    }

    pub fn parent(&self, span: &Span) -> Option<&Span> {
        self.spans.iter().find(|s| s.span_id == span.parent_span_id)
    }

    /// Whether `ancestor` is `span`'s parent, or its parent's, and so on.
    pub fn is_under(&self, span: &Span, ancestor: &Span) -> bool {
        let mut at = self.parent(span);
        while let Some(parent) = at {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = self.parent(parent);
        }
        false
    }

    /// The trace as an indented tree: `service: name [kind]`, children under parents.
    pub fn tree(&self) -> String {
        let mut out = String::new();
        let roots = self.spans.iter().filter(|s| self.parent(s).is_none());
        for root in roots {
            self.write_tree(root, 0, &mut out);
        }
        out
    }

    fn write_tree(&self, span: &Span, depth: usize, out: &mut String) {
        out.push_str(&format!(
            "{}{}: {} [{}]\n",
            "  ".repeat(depth),
            span.service,
            span.name,
            span.kind
        ));
        let mut children: Vec<&Span> = self
            .spans
            .iter()
            .filter(|s| s.parent_span_id == span.span_id)
            .collect();
        children.sort_by_key(|s| s.start_unix_nano);
        for child in children {
            self.write_tree(child, depth + 1, out);
        }
    }
}
