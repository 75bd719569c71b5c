use oxcart::config::Services;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let app = TestApp::spawn().await;
    let served = app.api.get("/openapi.json", None).await;
    let generated = serde_json::to_value(oxcart::openapi(&Services::all())).unwrap();
    assert_eq!(served.ok(200), &generated);
    assert_eq!(generated["openapi"], "3.1.0");

    let page = app.api.get("/docs", None).await;
    assert!(page.content_type().starts_with("text/html"));
    assert!(page.text.contains("fetch(\"/openapi.json\")"));
    assert!(
        !page.text.contains("https://"),
        "the docs page must not load anything from the network"
    );
}

/// A change to the API contract shows up here for review (`cargo insta review`).
#[test]
fn the_api_contract_is_stable() {
    insta::assert_json_snapshot!("openapi", oxcart::openapi(&Services::all()));
}

#[test]
fn every_error_response_is_a_documented_problem() {
    let document = serde_json::to_value(oxcart::openapi(&Services::all())).unwrap();
    let problem = serde_json::json!({ "$ref": "#/components/schemas/Problem" });
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500") && responses.contains_key("503"),
                "{method} {path}"
            );
            for (status, response) in responses
                .iter()
                .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
            {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"], problem,
                    "{method} {path} {status}"
                );
                checked += 1;
            }
            if operation.get("security").is_some() {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} needs a token but documents no 401"
                );
            }
        }
    }
    assert!(checked > 40);
    let kinds = document["x-problem-types"].as_array().unwrap();
    assert!(
        kinds
            .iter()
            .any(|k| k["type"] == "/docs#problem-validation")
    );
}

#[tokio::test]
async fn a_subset_of_services_serves_and_documents_only_those() {
    let app = TestApp::spawn_with(|c| c.services = "users".parse().unwrap()).await;
    let document = app.api.get("/openapi.json", None).await;
    let paths: Vec<_> = document.ok(200)["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/api/users")
            || p.starts_with("/api/auth")
            || p.starts_with("/.well-known")),
        "{paths:?}"
    );
    app.api.get("/api/products", None).await.problem(404);
    app.api
        .register("solo@example.com", oxcart_test_util::api::PASSWORD)
        .await
        .ok(201);
}

/// Server-side request forgery (OWASP API7) needs a request that names a place for the
/// server to go: no parameter or body property of any operation is a URL, or named like
/// one. The only places oxcart calls are those its configuration names.
#[test]
fn no_operation_takes_a_url() {
    let document = serde_json::to_value(oxcart::openapi(&Services::all())).unwrap();
    let mut found = Vec::new();
    fn walk(value: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if matches!(
                    map.get("format").and_then(|f| f.as_str()),
                    Some("uri" | "url" | "uri-reference" | "hostname")
                ) {
                    found.push(at.to_owned());
                }
                for (key, item) in map {
                    let lower = key.to_lowercase();
                    if ["url", "uri", "callback", "webhook", "redirect", "host"]
                        .iter()
                        .any(|word| lower.contains(word))
                    {
                        found.push(format!("{at}/{key}"));
                    }
                    walk(item, &format!("{at}/{key}"), found);
                }
            }
            serde_json::Value::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}/{n}"), found);
                }
            }
            _ => {}
        }
    }
    // The schemas inputs refer to, and those they refer to in turn.
    fn refs(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(target) = map.get("$ref").and_then(|r| r.as_str()) {
                    into.push(target.rsplit('/').next().unwrap().to_owned());
                }
                map.values().for_each(|v| refs(v, into));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, into)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            for part in ["parameters", "requestBody"] {
                walk(&operation[part], &format!("{at} {part}"), &mut found);
                refs(&operation[part], &mut pending);
            }
        }
    }
    let schemas = &document["components"]["schemas"];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if seen.insert(name.clone()) {
            walk(&schemas[&name], &name, &mut found);
            refs(&schemas[&name], &mut pending);
        }
    }
    assert!(
        seen.contains("ShippingAddress"),
        "inputs' schemas were followed: {seen:?}"
    );
    assert!(found.is_empty(), "URL-like inputs: {found:?}");
}
