//! The cache of product snapshots, as a shop sees it: repeated orders priced from it, and
//! a price change priced into the very next order, in one process and across processes
//! sharing Redis.

use oxcart_test_util::api::{Api, PASSWORD};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, create_admin, on_redis};

/// `cache_lookups_total{cache="product-snapshots",result}` in a scrape.
async fn lookups(api: &Api, result: &str) -> u64 {
    let scrape = api.get("/metrics", None).await.text;
    let series = format!("cache_lookups_total{{cache=\"product-snapshots\",result=\"{result}\"}} ");
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

#[tokio::test]
async fn a_price_change_prices_the_very_next_order() {
    let app = TestApp::spawn().await;
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
    let app = TestApp::spawn_with(|config| config.cache.enabled = false).await;
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
