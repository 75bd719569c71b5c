//! The ports the composition root connects pass their contracts: the catalog orders
//! price through, in-process (`LocalCatalog`) and over HTTP (`RemoteCatalog`, against the
//! real app's `GET /api/products/{id}`).

use std::sync::Arc;
use std::time::Duration;

use oxcart::LocalCatalog;
use oxcart_catalog::Catalog;
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::remote::RemoteCatalog;
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

mod local_catalog {
    use super::in_process;

    oxcart_test_util::product_catalog_contract!(in_process());
}

mod remote_catalog {
    use super::over_http;

    oxcart_test_util::product_catalog_contract!(over_http());
}
