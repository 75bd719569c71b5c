//! `deploy/serverless/terraform` agrees with the code: the variables it sets are the ones
//! the functions read, each function gets the ones it needs, and the API routes are the
//! orders service's own.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use oxcart_lambda::functions::VARIABLES;

fn terraform(file: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/serverless/terraform");
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// The upper-case names assigned in `text` (`NAME = …`): the functions' variables.
fn assigned(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn terraform_sets_only_variables_the_functions_read() {
    let lambda = terraform("lambda.tf");
    let set = assigned(&lambda);
    let known: BTreeSet<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    let unknown: Vec<_> = set.difference(&known).collect();
    assert!(unknown.is_empty(), "set but never read: {unknown:?}");
    // Every variable without a default: the sections' settings have one (the service's),
    // but for the catalog create-order prices with; the log filter has one too.
    for needed in VARIABLES
        .iter()
        .filter(|v| !v.contains("__") || **v == "OXCART_ORDERS__CATALOG_URL")
        .filter(|v| **v != "RUST_LOG")
    {
        assert!(set.contains(*needed), "{needed} is never set");
    }
}

#[test]
fn the_api_routes_are_the_orders_services_own() {
    let api = oxcart_orders::http::routes().into_openapi();
    let paths: Vec<&String> = api.paths.paths.keys().collect();
    let routes = terraform("api.tf");
    for (method, path) in [("POST", "/api/orders"), ("GET", "/api/orders/{id}")] {
        assert!(
            routes.contains(&format!("\"{method} {path}\"")),
            "{method} {path} is not routed"
        );
        assert!(
            paths.iter().any(|p| *p == path),
            "{path} is not an orders route"
        );
    }
}

#[test]
fn the_visibility_timeout_is_six_times_the_workers() {
    let sqs = terraform("sqs.tf");
    assert!(
        sqs.contains(
            "visibility_timeout_seconds  = 6 * local.functions[\"process-order\"].timeout"
        )
    );
    let lambda = terraform("lambda.tf");
    assert!(lambda.contains("function_response_types = [\"ReportBatchItemFailures\"]"));
}
