//! Prometheus metrics: one registry per process, rendered in the Prometheus text format,
//! or in OpenMetrics with exemplars when the scraper asks for it.
//!
//! The registry is owned by the application rather than global so that several app
//! instances in one test process never mix their counts.
//!
//! An *exemplar* ties a series to one trace that contributed to it: the latest sampled
//! request that fell into a latency bucket, the latest order counted. Grafana shows them
//! as points on a latency panel that open the trace. Only OpenMetrics can carry them, so
//! `/metrics` answers in it when the `Accept` header asks (Prometheus does, and stores
//! exemplars when started with `--enable-feature=exemplar-storage`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderMap, header};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The OpenMetrics media type, as served.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    exemplars: Exemplars,
    http: HttpMetrics,
}

/// The spec's RED metrics for HTTP, and the requests in progress.
#[derive(Clone)]
pub struct HttpMetrics {
    requests_total: IntCounterVec,
    request_duration_seconds: HistogramVec,
    in_flight: IntGauge,
    exemplars: Exemplars,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let exemplars = Exemplars::default();
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
        let in_flight = IntGauge::new(
            "http_requests_in_flight",
            "HTTP requests being handled right now",
        )
        .expect("valid metric definition");
        let metrics = Self {
            registry,
            exemplars: exemplars.clone(),
            http: HttpMetrics {
                requests_total,
                request_duration_seconds,
                in_flight,
                exemplars,
            },
        };
        metrics.register(Box::new(metrics.http.requests_total.clone()));
        metrics.register(Box::new(metrics.http.request_duration_seconds.clone()));
        metrics.register(Box::new(metrics.http.in_flight.clone()));
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

    /// Where services record the exemplars of their own counters.
    pub fn exemplars(&self) -> &Exemplars {
        &self.exemplars
    }

    /// The registry in Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The registry in OpenMetrics text format (1.0.0), with exemplars.
    pub fn render_openmetrics(&self) -> String {
        openmetrics(&self.registry.gather(), &self.exemplars)
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

async fn render(State(metrics): State<Metrics>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS)],
            metrics.render_openmetrics(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            metrics.render(),
        )
    }
}

impl HttpMetrics {
    /// Counts a finished request; `trace_id` (of a sampled trace) becomes the exemplar of
    /// its latency bucket and of its count.
    pub fn observe(
        &self,
        method: &str,
        endpoint: &str,
        status: u16,
        elapsed: Duration,
        trace_id: Option<&str>,
    ) {
        let status = status.to_string();
        self.requests_total
            .with_label_values(&[method, endpoint, &status])
            .inc();
        let seconds = elapsed.as_secs_f64();
        self.request_duration_seconds
            .with_label_values(&[method, endpoint])
            .observe(seconds);
        if let Some(trace_id) = trace_id {
            let labels = [("endpoint", endpoint), ("method", method)];
            self.exemplars.observed(
                "http_request_duration_seconds",
                &labels,
                prometheus::DEFAULT_BUCKETS,
                seconds,
                trace_id,
            );
            let labels = [
                ("endpoint", endpoint),
                ("method", method),
                ("status", &status),
            ];
            self.exemplars
                .counted("http_requests_total", &labels, trace_id);
        }
    }

    /// Counts a request in progress until the guard is dropped, however the request ends.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The latest exemplar of each series (and, for histograms, of each bucket).
#[derive(Clone, Default)]
pub struct Exemplars(Arc<Mutex<HashMap<String, Exemplar>>>);

#[derive(Debug, Clone, PartialEq)]
struct Exemplar {
    trace_id: String,
    value: f64,
    /// Seconds since the Unix epoch.
    timestamp: f64,
}

impl Exemplars {
    /// Records that `trace_id` incremented the counter series `name{labels}` by one.
    /// `name` is the sample's name, `…_total`.
    pub fn counted(&self, name: &str, labels: &[(&str, &str)], trace_id: &str) {
        self.record(series_key(name, labels, None), trace_id, 1.0);
    }

    /// Records that `trace_id` observed `value` into the histogram `name{labels}` whose
    /// bucket bounds are `buckets`: the exemplar of the first bucket that counts it.
    pub fn observed(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
        value: f64,
        trace_id: &str,
    ) {
        let bound = buckets
            .iter()
            .copied()
            .find(|bound| value <= *bound)
            .unwrap_or(f64::INFINITY);
        let key = series_key(&format!("{name}_bucket"), labels, Some(bound));
        self.record(key, trace_id, value);
    }

    fn record(&self, key: String, trace_id: &str, value: f64) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let exemplar = Exemplar {
            trace_id: trace_id.to_owned(),
            value,
            timestamp,
        };
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, exemplar);
        }
    }

    fn get(&self, key: &str) -> Option<Exemplar> {
        self.0.lock().ok()?.get(key).cloned()
    }
}

/// `name{a="1",b="2"}`, labels sorted by name as the registry sorts them, `le` last.
fn series_key(name: &str, labels: &[(&str, &str)], le: Option<f64>) -> String {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    if let Some(le) = le {
        labels.push(("le".to_owned(), float(le)));
    }
    let mut key = name.to_owned();
    write_labels(
        &mut key,
        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    key
}

fn write_labels<'a>(out: &mut String, labels: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut first = true;
    for (name, value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{name}=\"{}\"", escape(value, true));
    }
    if !first {
        out.push('}');
    }
}

fn escape(text: &str, quotes: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A number as OpenMetrics writes it: `1.0`, `0.005`, `+Inf`.
fn float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{value:?}")
    }
}

/// The OpenMetrics text exposition of `families`. Counters are named without their
/// `_total` suffix in the metadata lines, as the format requires.
fn openmetrics(families: &[MetricFamily], exemplars: &Exemplars) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for family in families {
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {base} {kind}");
        let _ = writeln!(out, "# HELP {base} {}", escape(family.help(), true));
        for metric in family.get_metric() {
            let labels: Vec<(&str, &str)> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let mut sample = |suffix: &str, extra: Option<(&str, String)>, value: String| {
                let mut series = format!("{base}{suffix}");
                let extra = extra.as_ref().map(|(k, v)| (*k, v.as_str()));
                write_labels(&mut series, labels.iter().copied().chain(extra));
                let exemplar = exemplars.get(&series);
                let _ = write!(out, "{series} {value}");
                if let Some(e) = exemplar {
                    let _ = write!(
                        out,
                        " # {{trace_id=\"{}\"}} {} {:.3}",
                        e.trace_id,
                        float(e.value),
                        e.timestamp
                    );
                }
                out.push('\n');
            };
            match family.get_field_type() {
                MetricType::COUNTER => {
                    sample("_total", None, float(metric.get_counter().get_value()));
                }
                MetricType::GAUGE => sample("", None, float(metric.get_gauge().get_value())),
                MetricType::HISTOGRAM => {
                    let histogram = metric.get_histogram();
                    for bucket in histogram.get_bucket() {
                        let le = float(bucket.upper_bound());
                        let count = bucket.cumulative_count().to_string();
                        sample("_bucket", Some(("le", le)), count);
                    }
                    let count = histogram.get_sample_count().to_string();
                    sample("_bucket", Some(("le", "+Inf".to_owned())), count.clone());
                    sample("_sum", None, float(histogram.get_sample_sum()));
                    sample("_count", None, count);
                }
                // Not used by oxcart; passed through as a bare value.
                MetricType::SUMMARY | MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_metric_names_with_help() {
        let metrics = Metrics::new();
        metrics.http().observe(
            "GET",
            "/api/orders/{id}",
            200,
            Duration::from_millis(3),
            None,
        );
        let text = metrics.render();
        assert!(text.contains("# HELP http_requests_total Total number of HTTP requests"));
        assert!(text.contains(
            r#"http_requests_total{endpoint="/api/orders/{id}",method="GET",status="200"} 1"#
        ));
        assert!(text.contains(r#"http_request_duration_seconds_bucket{endpoint="/api/orders/{id}",method="GET",le="0.005"} 1"#));
    }

    #[test]
    fn openmetrics_carries_exemplars_on_buckets_and_counters() {
        let metrics = Metrics::new();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let http = metrics.http();
        http.observe(
            "POST",
            "/api/orders",
            201,
            Duration::from_millis(30),
            Some(trace),
        );
        http.observe("POST", "/api/orders", 201, Duration::from_millis(3), None);
        let text = metrics.render_openmetrics();
        assert!(text.contains("# TYPE http_requests counter\n"), "{text}");
        assert!(text.contains("# TYPE http_request_duration_seconds histogram\n"));
        // 30 ms falls in the 0.05 bucket: that bucket carries the exemplar, the ones
        // below it do not.
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{endpoint=\"/api/orders\",method=\"POST\",le=\"0.05\"}} 2 # {{trace_id=\"{trace}\"}} 0.03 "
        )), "{text}");
        assert!(text.contains(
            "http_request_duration_seconds_bucket{endpoint=\"/api/orders\",method=\"POST\",le=\"0.025\"} 1\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{endpoint=\"/api/orders\",method=\"POST\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains(&format!(
            "http_requests_total{{endpoint=\"/api/orders\",method=\"POST\",status=\"201\"}} 2.0 # {{trace_id=\"{trace}\"}} 1.0 "
        )), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn in_flight_requests_are_counted_until_they_end() {
        let metrics = Metrics::new();
        let guard = metrics.http().in_flight();
        assert!(metrics.render().contains("http_requests_in_flight 1\n"));
        drop(guard);
        assert!(metrics.render().contains("http_requests_in_flight 0\n"));
    }
}
