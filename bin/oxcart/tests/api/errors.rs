//! Bad input: always a 4xx `application/problem+json` naming the field, never a 5xx.

use std::time::Duration;

use oxcart_test_util::api::order_body;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::TestApp;

async fn app_with_customer() -> (TestApp, String, Uuid) {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let product = app.api.product(&admin, "Mug", 1000, "EUR", 5).await;
    let (customer, _) = app.api.customer().await;
    (app, customer, product)
}

#[tokio::test]
async fn order_items_are_checked_field_by_field() {
    let (app, customer, product) = app_with_customer().await;
    let api = &app.api;
    let unknown = api
        .place_order(&customer, &[(product, 1), (Uuid::now_v7(), 1)])
        .await;
    unknown.problem_at(422, "#/items/1/productId");
    for quantity in [
        json!(0),
        json!(-1),
        json!(1001),
        json!(1_000_000_000_000_i64),
    ] {
        let mut body = order_body(&[(product, 1)]);
        body["items"][0]["quantity"] = quantity.clone();
        let reply = api.post("/api/orders", Some(&customer), &body).await;
        let problem = reply.problem_at(422, "#/items/0/quantity");
        assert!(
            problem["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("between 1 and 1000"),
            "{quantity}: {problem}"
        );
    }
    api.post(
        "/api/orders",
        Some(&customer),
        &json!({ "items": [], "shippingAddress": order_body(&[])["shippingAddress"], "paymentToken": "tok_success" }),
    )
    .await
    .problem_at(422, "#/items");
    api.place_order(&customer, &[(product, 1), (product, 2)])
        .await
        .problem_at(422, "#/items/1/productId");
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_named() {
    let (app, customer, product) = app_with_customer().await;
    let api = &app.api;
    let cases = [
        (
            json!({ "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/items",
        ),
        (
            json!({ "items": [{ "productId": product, "quantity": 1 }] }),
            "#/shippingAddress",
        ),
        (
            json!({ "items": [{ "productId": product, "quantity": "two" }], "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/items/0/quantity",
        ),
        (
            json!({ "items": [{ "productId": 5, "quantity": 1 }], "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/items/0/productId",
        ),
        (
            json!({ "items": [{ "productId": "not-a-uuid", "quantity": 1 }], "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/items/0/productId",
        ),
        (
            json!({ "items": "all of them", "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/items",
        ),
        // No payment method is never taken to mean a default card.
        (
            json!({ "items": [{ "productId": product, "quantity": 1 }], "shippingAddress": order_body(&[])["shippingAddress"] }),
            "#/paymentToken",
        ),
    ];
    for (body, pointer) in cases {
        api.post("/api/orders", Some(&customer), &body)
            .await
            .problem_at(422, pointer);
    }
    let mut no_city = order_body(&[(product, 1)]);
    no_city["shippingAddress"]
        .as_object_mut()
        .unwrap()
        .remove("city");
    api.post("/api/orders", Some(&customer), &no_city)
        .await
        .problem_at(422, "#/shippingAddress/city");
    let mut blank_city = order_body(&[(product, 1)]);
    blank_city["shippingAddress"]["city"] = json!("   ");
    api.post("/api/orders", Some(&customer), &blank_city)
        .await
        .problem_at(422, "#/shippingAddress/city");
    api.post("/api/orders", Some(&customer), &json!([1, 2]))
        .await
        .problem(422);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_wrong_media_types_415() {
    let (app, customer, _) = app_with_customer().await;
    let api = &app.api;
    let raw = |body: &'static str, content_type: &'static str| {
        api.client()
            .post(api.url("/api/orders"))
            .bearer_auth(&customer)
            .header("content-type", content_type)
            .body(body)
    };
    let reply = api.send(raw(r#"{"items": [}"#, "application/json")).await;
    assert!(
        reply.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    api.send(raw("", "application/json")).await.problem(400);
    api.send(raw("items=1", "application/x-www-form-urlencoded"))
        .await
        .problem_naming(415, "content-type");
    api.send(
        api.client()
            .post(api.url("/api/orders"))
            .bearer_auth(&customer)
            .body("{}"),
    )
    .await
    .problem(415);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 4096).await;
    let (customer, _) = app.api.customer().await;
    let mut body = order_body(&[(Uuid::now_v7(), 1)]);
    body["shippingAddress"]["line2"] = json!("x".repeat(10_000));
    app.api
        .post("/api/orders", Some(&customer), &body)
        .await
        .problem(413);
}

#[tokio::test]
async fn routing_errors_are_problems_too() {
    let (app, customer, product) = app_with_customer().await;
    let api = &app.api;
    let reply = api.get("/api/nothing-here", None).await;
    assert_eq!(reply.problem(404)["instance"], "/api/nothing-here");
    assert!(reply.body["requestId"].is_string());
    let reply = api
        .call(Method::DELETE, "/api/orders", Some(&customer), None)
        .await;
    reply.problem(405);
    assert!(reply.headers.contains_key("allow"));
    api.get("/api/orders/not-a-uuid", Some(&customer))
        .await
        .problem_naming(400, "id");
    api.get("/api/orders?limit=0", Some(&customer))
        .await
        .problem_naming(400, "limit");
    api.get("/api/orders?limit=lots", Some(&customer))
        .await
        .problem_naming(400, "limit");
    api.get("/api/orders?cursor=garbage", Some(&customer))
        .await
        .problem_naming(400, "cursor");
    api.get("/api/products?cursor=eyJ4IjoxfQ", None)
        .await
        .problem_naming(400, "cursor");
    let key = "x".repeat(300);
    let long_key = api
        .client()
        .post(api.url("/api/orders"))
        .bearer_auth(&customer)
        .header("Idempotency-Key", key)
        .json(&order_body(&[(product, 1)]));
    api.send(long_key)
        .await
        .problem_naming(400, "idempotency-key");
}

#[tokio::test]
async fn slow_requests_time_out_with_a_problem() {
    // Hashing a password takes longer than a millisecond, so registration outlasts this.
    let app = TestApp::spawn_with(|c| c.http.request_timeout = Duration::from_millis(1)).await;
    let reply = app
        .api
        .register("slow@example.com", oxcart_test_util::api::PASSWORD)
        .await;
    assert_eq!(reply.problem(503)["type"], "/docs#problem-timeout");
}
