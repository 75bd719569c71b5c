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
