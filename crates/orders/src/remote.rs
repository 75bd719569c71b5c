//! The catalog as another service: orders price an order through its
//! `GET /api/products/{id}`, one call per product, side by side. Used when the catalog
//! runs in another process (`catalog_url` set) and by the serverless `create-order`
//! function, which has no catalog of its own.

use async_trait::async_trait;
use oxcart_events::store::BoxError;
use oxcart_platform::http::client::ServiceClient;
use serde::Deserialize;
use uuid::Uuid;

use crate::ProductCatalog;
use crate::domain::ProductSnapshot;

/// The catalog's route orders call, as its OpenAPI document names it.
pub const PRODUCT_ROUTE: &str = "/api/products/{id}";

pub struct RemoteCatalog(ServiceClient);

impl RemoteCatalog {
    pub fn new(client: ServiceClient) -> Self {
        Self(client)
    }
}

/// What orders read of a product (a tolerant reader).
#[derive(Deserialize)]
struct RemoteProduct {
    id: Uuid,
    sku: String,
    name: String,
    price: i64,
    currency: String,
    /// Absent from a catalog older than tax classes.
    #[serde(rename = "taxClass", default = "crate::domain::standard_class")]
    tax_class: String,
}

#[async_trait]
impl ProductCatalog for RemoteCatalog {
    async fn snapshots(&self, ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        let paths: Vec<String> = ids.iter().map(|id| format!("/api/products/{id}")).collect();
        let calls = paths
            .iter()
            .map(|path| self.0.get_json::<RemoteProduct>(PRODUCT_ROUTE, path));
        let products = futures::future::try_join_all(calls).await?;
        Ok(products
            .into_iter()
            .flatten()
            .map(|p| ProductSnapshot {
                id: p.id,
                sku: p.sku,
                name: p.name,
                price: p.price,
                currency: p.currency,
                tax_class: p.tax_class,
            })
            .collect())
    }
}
