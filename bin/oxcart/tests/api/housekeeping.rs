//! Housekeeping, seen from outside: an order left unpaid is cancelled in time and its
//! stock goes back on sale, and an idempotency key answers with its order only within
//! its window. (The pruning of the inbox and of dead letters is tested on both engines
//! in `crates/sql/tests`.)

use std::time::Duration;

use oxcart_test_util::api::{Api, Reply, order_body};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, order_reaches};
use crate::saga::audit;

async fn place(api: &Api, token: &str, body: &Value, key: Option<&str>) -> Reply {
    let mut request = api
        .client()
        .post(api.url("/api/orders"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    api.send(request).await
}

async fn stock(api: &Api, product: Uuid) -> i64 {
    let reply = api.get(&format!("/api/products/{product}"), None).await;
    reply.ok(200)["stock"].as_i64().unwrap()
}

#[tokio::test]
async fn an_order_left_unpaid_is_cancelled_and_its_stock_goes_back_on_sale() {
    let app = TestApp::spawn_with(|config| {
        config.orders.payment_timeout = Duration::from_secs(1);
        config.housekeeping.interval = Duration::from_millis(200);
        // The provider sits on `tok_slow` far longer than the order may wait.
        config.payments.slow_delay = Duration::from_secs(10);
    })
    .await;
    let api = &app.api;
    let admin = app.admin().await;
    let product = api.product(&admin, "Mug", 990, "EUR", 10).await;
    let (customer, _) = api.customer().await;

    // One order paid (before the slow one holds the payments consumer up), one not.
    let paid = place(api, &customer, &order_body(&[(product, 2)]), None).await;
    let paid = paid.ok(201)["id"].as_str().unwrap().to_owned();
    order_reaches(api, &customer, &paid, "PAID").await;
    let mut slow = order_body(&[(product, 3)]);
    slow["paymentToken"] = json!("tok_slow");
    let waiting = place(api, &customer, &slow, None).await;
    let waiting = waiting.ok(201)["id"].as_str().unwrap().to_owned();

    order_reaches(api, &customer, &waiting, "CANCELLED").await;
    let cancelled = api
        .get(&format!("/api/orders/{waiting}"), Some(&customer))
        .await;
    assert_eq!(cancelled.ok(200)["statusReason"], "not paid within 1s");

    // Its three go back on sale; the paid order's two stay sold.
    let mut left = 0;
    for _ in 0..100 {
        left = stock(api, product).await;
        if left == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 8);
    // The customer hears of it, once.
    let mail = app.config.default_mail_dir();
    let mut mails = 0;
    for _ in 0..100 {
        mails = audit(&app.db, &mail)
            .await
            .mails(&waiting, "order-cancelled");
        if mails > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mails, 1);
    let paid_now = api
        .get(&format!("/api/orders/{paid}"), Some(&customer))
        .await;
    assert_eq!(paid_now.ok(200)["status"], "PAID");
    let scrape = api.get("/metrics", None).await.text;
    assert!(
        scrape.contains("housekeeping_done_total{task=\"unpaid_orders\"} 1"),
        "{}",
        scrape
            .lines()
            .filter(|l| l.starts_with("housekeeping"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_answers_within_its_window_and_is_free_after_it() {
    let app = TestApp::spawn_with(|config| {
        config.orders.idempotency_ttl = Duration::from_secs(1);
    })
    .await;
    let api = &app.api;
    let admin = app.admin().await;
    let product = api.product(&admin, "Mug", 990, "EUR", 100).await;
    let (customer, _) = api.customer().await;
    let two = order_body(&[(product, 2)]);

    let first = place(api, &customer, &two, Some("weekly-order")).await;
    let first = first.ok(201)["id"].clone();
    let retry = place(api, &customer, &two, Some("weekly-order")).await;
    assert_eq!(retry.ok(201)["id"], first, "a retry inside the window");
    assert_eq!(retry.headers["idempotent-replayed"], "true");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past the window the key is free again: a different order under it is a new order,
    let three = order_body(&[(product, 3)]);
    let next = place(api, &customer, &three, Some("weekly-order")).await;
    let next_id = next.ok(201)["id"].clone();
    assert_ne!(next_id, first);
    assert!(next.headers.get("idempotent-replayed").is_none());
    // whose own retries find it,
    let retry = place(api, &customer, &three, Some("weekly-order")).await;
    assert_eq!(retry.ok(201)["id"], next_id);
    // and which a different body within its window still may not reuse.
    place(api, &customer, &two, Some("weekly-order"))
        .await
        .problem_naming(422, "idempotency-key");
    app.stop().await;
}
