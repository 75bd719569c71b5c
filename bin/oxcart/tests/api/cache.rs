//! The caches, as a shop sees them: repeated orders priced from the product snapshots,
//! and a price change priced into the very next order, in one process and across
//! processes sharing Redis; a payment's status looked up from the payment cache, and its
//! refund seen at once.

use oxcart_test_util::api::{Api, PASSWORD};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, create_admin, on_redis};

/// `cache_lookups_total{cache="product-snapshots",result}` in a scrape.
async fn lookups(api: &Api, result: &str) -> u64 {
    cache_lookups(api, "product-snapshots", result).await
}

async fn cache_lookups(api: &Api, cache: &str, result: &str) -> u64 {
    let scrape = api.get("/metrics", None).await.text;
    let series = format!("cache_lookups_total{{cache=\"{cache}\",result=\"{result}\"}} ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the scrape"))
}

async fn total(api: &Api, token: &str, product: Uuid) -> i64 {
    let order = api.place_order(token, &[(product, 1)]).await;
    order.ok(201)["totalAmount"].as_i64().unwrap()
}

async fn reprice(api: &Api, admin: &str, product: Uuid, price: i64) {
    api.call(
        reqwest::Method::PATCH,
        &format!("/api/products/{product}"),
        Some(admin),
        Some(&json!({ "price": price })),
    )
    .await
    .ok(200);
}

/// The suite's app, with a cache: in memory on SQLite; on PostgreSQL (where other
/// processes could share the database) only in Redis.
async fn cached_app() -> TestApp {
    let prefix = format!("test-{}:", Uuid::new_v4().simple());
    TestApp::spawn_with(|config| {
        if std::env::var("OXCART_TEST_BACKEND").as_deref() == Ok("postgres") {
            on_redis(config, &prefix);
        }
    })
    .await
}

#[tokio::test]
async fn a_price_change_prices_the_very_next_order() {
    let app = cached_app().await;
    let api = &app.api;
    let admin = app.admin().await;
    let product = api.product(&admin, "Mug", 1000, "EUR", 100).await;
    let (customer, _) = api.customer().await;

    assert_eq!(total(api, &customer, product).await, 1000);
    let hits = lookups(api, "hit").await;
    assert_eq!(total(api, &customer, product).await, 1000);
    assert_eq!(
        lookups(api, "hit").await,
        hits + 1,
        "the second order is priced from the cache"
    );

    reprice(api, &admin, product, 1500).await;
    let misses = lookups(api, "miss").await;
    assert_eq!(
        total(api, &customer, product).await,
        1500,
        "never the old price"
    );
    assert_eq!(lookups(api, "miss").await, misses + 1);
    assert_eq!(total(api, &customer, product).await, 1500);
    app.stop().await;
}

#[tokio::test]
async fn without_the_cache_every_order_reads_the_catalog() {
    let app = TestApp::spawn_with(|config| config.caching.enabled = false).await;
    let api = &app.api;
    let admin = app.admin().await;
    let product = api.product(&admin, "Mug", 1000, "EUR", 100).await;
    let (customer, _) = api.customer().await;
    assert_eq!(total(api, &customer, product).await, 1000);
    let scrape = api.get("/metrics", None).await.text;
    assert!(
        !scrape.contains("cache_lookups_total"),
        "no cache, no lookups"
    );
    app.stop().await;
}

/// Orders in one process, priced from the catalog in another over HTTP, through the
/// cache they share in Redis: the catalog's change reaches the orders' next price.
#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn across_processes_the_cache_in_redis_follows_the_catalog() {
    let prefix = format!("test-{}:", Uuid::new_v4().simple());
    let pem = oxcart_platform::auth::SigningKey::generate()
        .unwrap()
        .to_pem();
    let shared = |config: &mut oxcart::config::Config| {
        on_redis(config, &prefix);
        config.auth.jwt_private_key = Some(pem.clone().into());
    };
    let catalog = TestApp::spawn_with(shared).await;
    let admin = create_admin(&catalog.config, &catalog.db, &catalog.api).await;
    let product = catalog.api.product(&admin, "Mug", 1000, "EUR", 100).await;
    catalog
        .api
        .register("ada@example.com", PASSWORD)
        .await
        .ok(201);
    let customer = catalog.api.token("ada@example.com", PASSWORD).await;

    let url = catalog.api.url("");
    let orders = TestApp::spawn_with(|config| {
        shared(config);
        config.services = "orders".parse().unwrap();
        config.orders.catalog_url = Some(url.clone());
    })
    .await;
    assert_eq!(total(&orders.api, &customer, product).await, 1000);
    assert_eq!(total(&orders.api, &customer, product).await, 1000);
    assert_eq!(lookups(&orders.api, "hit").await, 1);

    reprice(&catalog.api, &admin, product, 1750).await;
    assert_eq!(total(&orders.api, &customer, product).await, 1750);
    orders.stop().await;
    catalog.stop().await;
}

#[tokio::test]
async fn a_payment_looked_up_from_the_cache_is_never_behind_its_refund() {
    let app = cached_app().await;
    let api = &app.api;
    let admin = app.admin().await;
    let product = api.product(&admin, "Mug", 1000, "EUR", 100).await;
    let (customer, _) = api.customer().await;
    let order = api.place_order(&customer, &[(product, 1)]).await;
    let order = order.ok(201)["id"].as_str().unwrap().to_owned();
    crate::helpers::order_reaches(api, &customer, &order, "PAID").await;
    let path = format!("/api/payments?orderId={order}");
    let status = |reply: oxcart_test_util::api::Reply| {
        reply.ok(200)["items"][0]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    assert_eq!(status(api.get(&path, Some(&customer)).await), "SUCCEEDED");
    let hits = cache_lookups(api, "payments", "hit").await;
    assert_eq!(status(api.get(&path, Some(&customer)).await), "SUCCEEDED");
    assert_eq!(cache_lookups(api, "payments", "hit").await, hits + 1);
    // Another customer still sees nothing: the cache holds the order's payments, and
    // the owner's filter applies to what it answers.
    let (other, _) = api.customer().await;
    let theirs = api.get(&path, Some(&other)).await;
    assert_eq!(theirs.ok(200)["items"], json!([]));

    api.post(
        &format!("/api/orders/{order}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .ok(200);
    // The refund is a step of the saga; once recorded, no lookup answers the old status.
    let mut seen = String::new();
    for _ in 0..200 {
        seen = status(api.get(&path, Some(&customer)).await);
        if seen == "REFUNDED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, "REFUNDED");
    app.stop().await;
}
