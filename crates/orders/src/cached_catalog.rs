//! The catalog's product snapshots, cached where orders price from them.
//!
//! Placing an order reads every product it names from the catalog: a query, or a call
//! to the catalog service. The snapshots change only when an admin changes a product,
//! and the catalog invalidates the cache then, before it answers
//! (`oxcart_platform::cache`), so the cache never prices an order at a price the catalog
//! no longer has. Stock is not in a snapshot: it is reserved by the catalog itself, from
//! its table, when the order's event arrives.

use std::sync::Arc;

use async_trait::async_trait;
use oxcart_events::store::BoxError;
use oxcart_platform::cache::Cached;
use uuid::Uuid;

use crate::domain::ProductSnapshot;
use crate::service::ProductCatalog;

/// A [`ProductCatalog`] that asks `inner` only for what `cache` lacks.
pub struct CachedCatalog {
    pub inner: Arc<dyn ProductCatalog>,
    pub cache: Cached,
}

#[async_trait]
impl ProductCatalog for CachedCatalog {
    async fn snapshots(&self, ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        let keys: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.cache
            .get_or_fetch(&keys, |missing| async move {
                let ids: Vec<Uuid> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                let found = self.inner.snapshots(&ids).await?;
                Ok::<_, BoxError>(found.into_iter().map(|s| (s.id.to_string(), s)).collect())
            })
            .await
    }
}
