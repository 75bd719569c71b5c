//! Prometheus metrics: one registry per process, rendered in the text exposition format.
//!
//! The registry is owned by the application rather than global so that several app
//! instances in one test process never mix their counts.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::header;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
}

/// The spec's RED metrics for HTTP.
#[derive(Clone)]
pub struct HttpMetrics {
    requests_total: IntCounterVec,
    request_duration_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("http_requests_total", "Total number of HTTP requests"),
            &["method", "endpoint", "status"],
        )
        .expect("valid metric definition");
        let request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(prometheus::DEFAULT_BUCKETS.to_vec()),
            &["method", "endpoint"],
        )
        .expect("valid metric definition");
        let metrics = Self {
            registry,
            http: HttpMetrics {
                requests_total,
                request_duration_seconds,
            },
        };
        metrics.register(Box::new(metrics.http.requests_total.clone()));
        metrics.register(Box::new(metrics.http.request_duration_seconds.clone()));
        #[cfg(target_os = "linux")]
        metrics.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        metrics
    }

    /// Adds a collector. Names are fixed at compile time, so a clash is a programming error.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("metric registered twice");
    }

    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// The registry in Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(render))
            .with_state(self.clone())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        metrics.render(),
    )
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, endpoint: &str, status: u16, elapsed: Duration) {
        self.requests_total
            .with_label_values(&[method, endpoint, &status.to_string()])
            .inc();
        self.request_duration_seconds
            .with_label_values(&[method, endpoint])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_metric_names_with_help() {
        let metrics = Metrics::new();
        metrics
            .http()
            .observe("GET", "/api/orders/{id}", 200, Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains("# HELP http_requests_total Total number of HTTP requests"));
        assert!(text.contains(
            r#"http_requests_total{endpoint="/api/orders/{id}",method="GET",status="200"} 1"#
        ));
        assert!(text.contains(r#"http_request_duration_seconds_bucket{endpoint="/api/orders/{id}",method="GET",le="0.005"} 1"#));
    }
}
