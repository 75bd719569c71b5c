//! The ports the composition root connects pass their contracts: the catalog orders
//! price through, in-process (`LocalCatalog`), over HTTP (`RemoteCatalog`, against the
//! real app's `GET /api/products/{id}`) and through the cache of snapshots (`CachedCatalog`).

use std::sync::Arc;
use std::time::Duration;

use oxcart::LocalCatalog;
use oxcart_catalog::Catalog;
use oxcart_orders::cached_catalog::CachedCatalog;
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::remote::RemoteCatalog;
use oxcart_platform::cache::{CacheMetrics, Cached, MemoryCache, PRODUCT_SNAPSHOTS};
use oxcart_platform::http::client::ServiceClient;
use oxcart_platform::tls::TrustedCas;
use oxcart_test_util::catalog::Priced;

use crate::helpers::TestApp;

/// The app with two products, in two currencies, as its API describes them.
async fn stocked() -> (TestApp, Vec<ProductSnapshot>) {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let mut products = Vec::new();
    for (name, price, currency) in [("Enamel mug", 1450, "EUR"), ("Tea bowl", 3200, "JPY")] {
        let id = app.api.product(&admin, name, price, currency, 5).await;
        let product = app.api.get(&format!("/api/products/{id}"), None).await;
        let product = product.ok(200);
        products.push(ProductSnapshot {
            id,
            sku: product["sku"].as_str().unwrap().to_owned(),
            name: product["name"].as_str().unwrap().to_owned(),
            price: product["price"].as_i64().unwrap(),
            currency: product["currency"].as_str().unwrap().to_owned(),
            tax_class: product["taxClass"].as_str().unwrap().to_owned(),
        });
    }
    (app, products)
}

async fn in_process() -> (Priced, TestApp) {
    let (app, products) = stocked().await;
    let catalog = Arc::new(LocalCatalog(Catalog::new(app.db.clone())));
    (Priced { catalog, products }, app)
}

async fn over_http() -> (Priced, TestApp) {
    let (app, products) = stocked().await;
    let client = ServiceClient::new(
        &app.api.url(""),
        Duration::from_secs(5),
        &TrustedCas::public(),
    )
    .unwrap();
    let catalog = Arc::new(RemoteCatalog::new(client));
    (Priced { catalog, products }, app)
}

/// The catalog through the cache of snapshots, filled and read in the contract's calls.
async fn cached() -> (Priced, TestApp) {
    let (mut priced, app) = in_process().await;
    let metrics = oxcart_platform::metrics::Metrics::new();
    let cache = Cached::new(
        Arc::new(MemoryCache::new(100, Duration::from_secs(60))),
        PRODUCT_SNAPSHOTS,
        Duration::from_secs(60),
        &CacheMetrics::new(&metrics),
    );
    priced.catalog = Arc::new(CachedCatalog {
        inner: priced.catalog,
        cache,
    });
    (priced, app)
}

mod cached_catalog {
    use super::cached;

    oxcart_test_util::product_catalog_contract!(cached());
}

mod local_catalog {
    use super::in_process;

    oxcart_test_util::product_catalog_contract!(in_process());
}

mod remote_catalog {
    use super::over_http;

    oxcart_test_util::product_catalog_contract!(over_http());
}
