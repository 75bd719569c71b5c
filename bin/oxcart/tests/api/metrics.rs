use std::collections::BTreeSet;
use std::path::Path;

use promql_parser::parser::{Expr, parse};
use serde::Deserialize as _;
use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let app = TestApp::spawn().await;
    let (customer, _) = app.api.customer().await;
    let missing = uuid::Uuid::now_v7();
    app.api
        .get(&format!("/api/orders/{missing}"), Some(&customer))
        .await
        .problem(404);
    app.api
        .get(&format!("/api/orders/{missing}"), Some(&customer))
        .await
        .problem(404);
    app.api.get("/no/such/route", None).await.problem(404);

    let scrape = app.api.get("/metrics", None).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = &scrape.text;
    assert!(
        text.contains(
            r#"http_requests_total{endpoint="/api/orders/{id}",method="GET",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{endpoint="/api/users",method="POST",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{endpoint="unmatched",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{endpoint="/api/orders/{id}",method="GET",le="0.005"}"#));
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(
        !text.contains(&missing.to_string()),
        "raw paths must not become labels"
    );
}

/// Metrics the rules and dashboards name that oxcart does not expose, and what does.
const EXTERNAL: &[(&str, &str)] = &[
    ("up", "Prometheus, for every target it scrapes"),
    (
        "container_memory_working_set_bytes",
        "cAdvisor, in the kubelet",
    ),
    (
        "container_spec_memory_limit_bytes",
        "cAdvisor, in the kubelet",
    ),
    (
        "kube_pod_container_status_restarts_total",
        "kube-state-metrics",
    ),
];

/// Exposed only by a process that relays the log to Kafka: the distributed test checks
/// that such a process does expose them.
pub const KAFKA_ONLY: &[&str] = &[
    "outbox_backlog",
    "events_published_total",
    "relay_publish_duration_seconds_bucket",
];

fn observability() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

/// Every PromQL expression in the alert rules and the dashboards, with where it is.
fn expressions() -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut exprs = Vec::new();
    let mut recorded = BTreeSet::new();
    let rules_dir = observability().join("prometheus/rules");
    for entry in std::fs::read_dir(&rules_dir).unwrap() {
        let path = entry.unwrap().path();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
                if let Some(record) = rule["record"].as_str() {
                    recorded.insert(record.to_owned());
                }
                let expr = rule["expr"].as_str().unwrap().to_owned();
                exprs.push((format!("{}: {name}", path.display()), expr));
            }
        }
    }
    // The canary analysis: its arguments (`{{args.service}}`) stand in as label values.
    let analysis = observability().join("../rollouts/analysis.yaml");
    let text = std::fs::read_to_string(&analysis).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_yaml::Value::deserialize(doc).unwrap();
        for metric in doc["spec"]["metrics"].as_sequence().unwrap() {
            let query = metric["provider"]["prometheus"]["query"].as_str().unwrap();
            let query = query.replace("{{args.", "").replace("}}", "");
            exprs.push((
                format!(
                    "{}: {}",
                    analysis.display(),
                    metric["name"].as_str().unwrap()
                ),
                query,
            ));
        }
    }
    let dashboards = observability().join("grafana/dashboards");
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let place = format!("{}: {}", path.display(), panel["title"].as_str().unwrap());
                exprs.push((place, target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    assert!(exprs.len() > 50, "found the rules and dashboards");
    (exprs, recorded)
}

/// The metric names an expression selects, found by parsing it as Prometheus would.
fn metric_names(expr: &Expr, names: &mut BTreeSet<String>) {
    match expr {
        Expr::VectorSelector(vs) => selector_names(vs, names),
        Expr::MatrixSelector(ms) => selector_names(&ms.vs, names),
        Expr::Aggregate(a) => {
            metric_names(&a.expr, names);
            if let Some(param) = &a.param {
                metric_names(param, names);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, names),
        Expr::Binary(b) => {
            metric_names(&b.lhs, names);
            metric_names(&b.rhs, names);
        }
        Expr::Paren(p) => metric_names(&p.expr, names),
        Expr::Subquery(s) => metric_names(&s.expr, names),
        Expr::Call(call) => {
            for arg in &call.args.args {
                metric_names(arg, names);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector_names(vs: &promql_parser::parser::VectorSelector, names: &mut BTreeSet<String>) {
    let named = vs.name.iter().cloned();
    let matched = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name == "__name__")
        .map(|m| m.value.clone());
    names.extend(named.chain(matched));
}

/// The sample names of a Prometheus text scrape, each `# TYPE`d family checked for help.
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let family = family.split(' ').next().unwrap();
            let help = format!("# HELP {family} ");
            let documented = text
                .lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len());
            assert!(documented, "{family} has no # HELP text");
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            names.insert(name.to_owned());
        }
    }
    names
}

/// Every metric the alert rules and the Grafana dashboards query is one a live oxcart
/// exposes (or a listed outside source provides): a renamed metric fails here, not
/// silently on a dashboard.
#[tokio::test]
async fn rules_and_dashboards_query_only_metrics_oxcart_exposes() {
    let app = TestApp::spawn().await;
    let (customer, _) = app.api.customer().await;
    app.api.get("/api/orders", Some(&customer)).await.ok(200);
    let scrape = app.api.get("/metrics", None).await;
    let exposed = scraped_names(&scrape.text);

    let (exprs, recorded) = expressions();
    let external: BTreeSet<&str> = EXTERNAL.iter().map(|(name, _)| *name).collect();
    let mut unknown = Vec::new();
    for (place, expr) in &exprs {
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{place}: `{expr}` is not PromQL: {e}"));
        let mut names = BTreeSet::new();
        metric_names(&parsed, &mut names);
        assert!(!names.is_empty(), "{place}: `{expr}` selects no metric");
        for name in names {
            let known = exposed.contains(&name)
                || recorded.contains(&name)
                || external.contains(name.as_str())
                || KAFKA_ONLY.contains(&name.as_str());
            if !known {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "queried but not exposed by oxcart:\n{}\n\nexposed: {exposed:?}",
        unknown.join("\n")
    );
    for name in KAFKA_ONLY {
        assert!(
            !exposed.contains(*name),
            "{name} is exposed without Kafka: drop it from KAFKA_ONLY"
        );
    }
}

/// The check above has teeth: a misspelt metric in an expression is found.
#[test]
fn a_misspelt_metric_is_found() {
    let mut names = BTreeSet::new();
    let expr = parse(r#"sum by (le) (rate(http_request_duration_secnds_bucket{endpoint="/x"}[5m])) / on() group_left vector(1)"#).unwrap();
    metric_names(&expr, &mut names);
    assert_eq!(
        names,
        BTreeSet::from(["http_request_duration_secnds_bucket".to_owned()])
    );
}

/// Prometheus asks for OpenMetrics, the format that carries exemplars; anything else gets
/// the classic text format.
#[tokio::test]
async fn metrics_are_served_in_openmetrics_when_asked() {
    let app = TestApp::spawn().await;
    let request = app.api.client().get(app.api.url("/metrics")).header(
        "accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    let scrape = app.api.send(request).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    assert!(scrape.text.contains("# TYPE orders_created counter\n"));
    assert!(
        scrape
            .text
            .contains("orders_created_total{status=\"created\"} 0.0\n")
    );
    assert!(scrape.text.contains("# TYPE db_pool_connections gauge\n"));
    assert!(
        scrape
            .text
            .contains(r#"db_pool_connections{pool="primary",state="in_use"}"#)
    );
    assert!(scrape.text.ends_with("# EOF\n"));
}

/// The OpenTelemetry Collector configurations hang together: each pipeline names only
/// receivers, processors and exporters that are defined, each defined one is used, and
/// every pipeline refuses data before queueing it (memory_limiter first) and batches
/// last. No collector binary runs here to validate them; this is the static check.
#[test]
fn collector_pipelines_use_what_they_define_in_the_right_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for file in [
        "observability/otel-collector.yaml",
        "compose/otel-collector.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let pipelines = config["service"]["pipelines"].as_mapping().unwrap();
        assert!(
            pipelines.contains_key("traces"),
            "{file}: a traces pipeline"
        );
        for kind in ["receivers", "processors", "exporters"] {
            let defined: BTreeSet<&str> = config[kind]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap())
                .collect();
            let mut used = BTreeSet::new();
            for (name, pipeline) in pipelines {
                let names: Vec<&str> = pipeline[kind]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                for component in &names {
                    assert!(
                        defined.contains(component),
                        "{file}: {name:?} uses undefined {kind} {component}"
                    );
                }
                if kind == "processors" {
                    assert_eq!(names.first(), Some(&"memory_limiter"), "{file}: {name:?}");
                    assert_eq!(names.last(), Some(&"batch"), "{file}: {name:?}");
                }
                used.extend(names);
            }
            assert_eq!(used, defined, "{file}: every {kind} defined is used");
        }
    }
}
