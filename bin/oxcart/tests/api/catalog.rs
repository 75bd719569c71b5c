use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn admins_write_and_everyone_reads() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _) = app.api.customer().await;
    let body = json!({ "sku": "mug-01", "name": "Enamel Mug", "description": "350 ml", "price": 1450, "currency": "EUR", "stock": 25 });
    app.api
        .post("/api/products", None, &body)
        .await
        .problem(401);
    app.api
        .post("/api/products", Some(&customer), &body)
        .await
        .problem(403);
    let created = app.api.post("/api/products", Some(&admin), &body).await;
    let product = created.ok(201).clone();
    assert_eq!(product["sku"], "MUG-01");
    assert_eq!(created.headers["etag"], "\"1\"");
    let id = product["id"].as_str().unwrap();
    let read = app.api.get(&format!("/api/products/{id}"), None).await;
    assert_eq!(read.ok(200), &product);
    app.api
        .post("/api/products", Some(&admin), &body)
        .await
        .problem_at(409, "#/sku");

    let patch = |token: &str, body: serde_json::Value, if_match: Option<&str>| {
        let mut request = app
            .api
            .client()
            .request(Method::PATCH, app.api.url(&format!("/api/products/{id}")))
            .bearer_auth(token)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        app.api.send(request)
    };
    patch(&customer, json!({ "stock": 1 }), None)
        .await
        .problem(403);
    let updated = patch(&admin, json!({ "stock": 30, "price": 1500 }), Some("\"1\"")).await;
    assert_eq!(
        (
            updated.ok(200)["stock"].as_i64(),
            updated.body["price"].as_i64(),
            updated.body["version"].as_i64()
        ),
        (Some(30), Some(1500), Some(2))
    );
    assert_eq!(updated.headers["etag"], "\"2\"");
    patch(&admin, json!({ "stock": 31 }), Some("\"1\""))
        .await
        .problem_naming(412, "if-match");
    patch(&admin, json!({ "stock": -1, "currency": "EURO" }), None)
        .await
        .problem_at(422, "#/currency");
    patch(&admin, json!({ "colour": "red" }), None)
        .await
        .problem_at(422, "#/colour");
    app.api
        .get(&format!("/api/products/{}", uuid::Uuid::now_v7()), None)
        .await
        .problem(404);
}

#[tokio::test]
async fn products_are_validated() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let bad =
        json!({ "sku": "has space", "name": "", "price": -5, "currency": "eur", "stock": -1 });
    let reply = app.api.post("/api/products", Some(&admin), &bad).await;
    let pointers: Vec<_> = reply.problem(422)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["#/sku", "#/name", "#/price", "#/currency", "#/stock"]
    );
}

#[tokio::test]
async fn listing_pages_by_name_and_searches() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for name in [
        "Teapot",
        "mug, large",
        "Mug",
        "Saucer",
        "Espresso cup",
        "100% cotton apron",
    ] {
        app.api.product(&admin, name, 100, "EUR", 1).await;
    }
    let mut names = Vec::new();
    let mut path = "/api/products?limit=4".to_owned();
    loop {
        let page = app.api.get(&path, None).await;
        let body = page.ok(200);
        names.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        match body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/products?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        [
            "100% cotton apron",
            "Espresso cup",
            "Mug",
            "mug, large",
            "Saucer",
            "Teapot"
        ]
    );
    let found = app.api.get("/api/products?q=MUG", None).await;
    let found: Vec<_> = found.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["Mug", "mug, large"]);
    // Wildcards in a search are text.
    let percent = app.api.get("/api/products?q=%25", None).await;
    assert_eq!(percent.ok(200)["items"].as_array().unwrap().len(), 1);
    app.api
        .get("/api/products?limit=101", None)
        .await
        .problem_naming(400, "limit");
}
