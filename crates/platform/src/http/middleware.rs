//! The one middleware every request passes through: a tracing span carrying the request
//! id and route, the request timeout, the RED metrics, and the guarantee that any error
//! response leaves as `application/problem+json`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use tracing::Instrument;

use crate::metrics::HttpMetrics;
use crate::problem::{ApiError, PROBLEM_JSON, Problem, ProblemKind, problem_response};
use crate::telemetry::context;

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Largest error body read back to be rewritten as a problem; ours are far smaller.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct Observe {
    pub metrics: HttpMetrics,
    pub timeout: Duration,
}

pub async fn observe(State(observe): State<Observe>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // The route template, never the raw path: `/api/orders/{id}` keeps label cardinality
    // bounded however many orders there are.
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = request.uri().path().to_owned();
    // An OpenTelemetry server span, named and attributed by the HTTP semantic conventions,
    // continuing the caller's trace when the request carries a `traceparent`.
    let span = tracing::info_span!(
        "request",
        otel.name = %span_name(method, &endpoint),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = tracing::field::Empty,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    // Only a route that matched: the conventions leave it out rather than invent one.
    if endpoint != UNMATCHED {
        span.record("http.route", endpoint.as_str());
    }
    context::continue_from_headers(&span, request.headers());
    let _in_flight = observe.metrics.in_flight();

    let response =
        match tokio::time::timeout(observe.timeout, next.run(request).instrument(span.clone()))
            .await
        {
            Ok(response) => response,
            Err(_) => ApiError::new(ProblemKind::Timeout)
                .with_detail(format!(
                    "no response within {}s",
                    observe.timeout.as_secs_f64()
                ))
                .into_response(),
        };
    let response = as_problem(response, &path, &request_id).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let trace_id = span.in_scope(context::current_trace_id);
    observe
        .metrics
        .observe(method, &endpoint, status, elapsed, trace_id.as_deref());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    response
}

/// `POST /api/orders`; just the method when no route matched, as the conventions ask, so
/// that probing for paths cannot mint span names.
fn span_name(method: &str, endpoint: &str) -> String {
    if endpoint == UNMATCHED {
        method.to_owned()
    } else {
        format!("{method} {endpoint}")
    }
}

/// Labels only the standard methods by name so a client cannot mint label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Ensures an error response is a problem document carrying `instance` and `requestId`,
/// whoever produced it: our handlers, axum's router (405) or a panic.
async fn as_problem(response: Response, path: &str, request_id: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let parsed = if is_problem {
        serde_json::from_slice::<Problem>(&bytes).ok()
    } else {
        None
    };
    let mut problem = parsed.unwrap_or_else(|| {
        let mut problem = Problem::new(ProblemKind::for_status(status));
        problem.status = status.as_u16();
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        if !text.is_empty() {
            problem.detail = Some(text);
        }
        problem
    });
    problem.instance.get_or_insert_with(|| path.to_owned());
    if !request_id.is_empty() {
        problem
            .request_id
            .get_or_insert_with(|| request_id.to_owned());
    }
    let rebuilt = problem_response(&problem);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let (_, body) = rebuilt.into_parts();
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bare_errors_become_problems_with_instance_and_request_id() {
        let bare = (
            http::StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
        )
            .into_response();
        let response = as_problem(bare, "/api/orders", "req-1").await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::ALLOW], "GET");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.status, 405);
        assert_eq!(problem.type_uri, "/docs#problem-method-not-allowed");
        assert_eq!(problem.instance.as_deref(), Some("/api/orders"));
        assert_eq!(problem.request_id.as_deref(), Some("req-1"));
    }

    #[tokio::test]
    async fn successful_responses_pass_untouched() {
        let ok = (http::StatusCode::OK, "fine").into_response();
        let response = as_problem(ok, "/", "r").await;
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(&body[..], b"fine");
    }
}
