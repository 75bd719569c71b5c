//! The product catalog: products, their prices and their stock.
//!
//! # Layout
//! - [`domain`]: what a valid product, SKU, price and stock level are.
//! - [`store`]: the `products` table, with cursor pagination by name.
//! - [`http`]: admin writes (`POST`, `PATCH` with `If-Match`), public reads.
//! - [`stock`]: the saga step that reserves stock for orders and releases it.
//! - [`build`]: the service on its database and the log it answers orders on.
//!
//! Prices are integers in the currency's minor unit. Orders never trust a client's
//! price: they read it from here when the order is placed.

pub mod domain;
pub mod http;
pub mod stock;
pub mod store;

use std::sync::Arc;

use oxcart_db::{self as db, Db};
use oxcart_events::outbox::Outbox;
use oxcart_platform::cache::Cached;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::tax::TaxConfig;
use oxcart_platform::{BoxError, FieldError, ProblemKind, ServiceError};
use uuid::Uuid;

use crate::domain::{Changes, NewProduct, Product};
use crate::store::{After, ProductStore};

pub const ABOUT: About = About {
    name: "catalog",
    description: "Products, prices and stock.",
    openapi: || http::routes().into_openapi(),
};

/// The catalog on `db`: its routes, and the stock step of the order saga, which answers
/// on `outbox` in the same transaction as the reservation.
///
/// `snapshots` is the cache of product snapshots orders price from, when one exists for
/// this catalog (in this process, or shared through Redis): a change to a product
/// invalidates it before the change is acknowledged, so the next order is priced at the
/// new price.
pub fn build(db: Db, outbox: Arc<dyn Outbox>, snapshots: Option<Cached>, tax: &TaxConfig) -> Parts {
    let mut catalog = Catalog::new(db.clone());
    catalog.snapshots = snapshots;
    catalog.tax = Arc::new(tax.clone());
    Parts::routes(http::router(catalog)).with_handler(Arc::new(stock::Stock::handler(db, outbox)))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("a product with SKU {0} already exists")]
    SkuTaken(String),
    #[error("no such product")]
    NotFound,
    #[error("the product is at version {actual}, not {expected}")]
    VersionMismatch { expected: i64, actual: i64 },
    #[error("the products table holds an unreadable {0}")]
    Corrupt(String),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
    #[error("the cache of product snapshots cannot be reached, so the change was not made")]
    CacheUnavailable(#[source] BoxError),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Invalid(_) => ProblemKind::Validation,
            Self::SkuTaken(_) => ProblemKind::Conflict,
            Self::NotFound => ProblemKind::NotFound,
            Self::VersionMismatch { .. } => ProblemKind::PreconditionFailed,
            Self::Corrupt(_) => ProblemKind::Internal,
            Self::Storage(e) => ProblemKind::of_storage(e),
            Self::CacheUnavailable(_) => ProblemKind::Unavailable,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::SkuTaken(_) => vec![FieldError::body(&["sku"], "is already in use")],
            Self::VersionMismatch { .. } => vec![FieldError::header(
                "if-match",
                "does not match the current ETag",
            )],
            _ => Vec::new(),
        }
    }
}

/// The catalog service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: ProductStore,
    /// The orders' cache of product snapshots, which a change invalidates.
    snapshots: Option<Cached>,
    /// The tax classes a product may have.
    tax: Arc<TaxConfig>,
}

impl Catalog {
    /// The catalog on `db`, with the default tax classes (`[tax]`'s defaults).
    pub fn new(db: Db) -> Self {
        Self {
            store: ProductStore::new(db),
            snapshots: None,
            tax: Arc::new(TaxConfig::default()),
        }
    }

    pub async fn create(&self, new: NewProduct) -> Result<Product, Error> {
        let now = db::now();
        let product = Product {
            id: Uuid::now_v7(),
            sku: new.sku,
            name: new.name,
            description: new.description,
            price: new.price,
            currency: new.currency,
            tax_class: new.tax_class,
            stock: new.stock,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.store.insert(&product).await?;
        tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
        Ok(product)
    }

    /// The tax classes a product may be given.
    pub fn tax(&self) -> &TaxConfig {
        &self.tax
    }

    pub async fn get(&self, id: Uuid) -> Result<Product, Error> {
        self.store.get(id).await?.ok_or(Error::NotFound)
    }

    /// The products among `ids` that exist.
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Product>, Error> {
        self.store.get_many(ids).await
    }

    pub async fn list(
        &self,
        search: Option<&str>,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<(Product, After)>, Error> {
        let search = search
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        self.store.list(search.as_deref(), after, limit).await
    }

    /// Applies `changes`, provided the product is still at `if_version` when one is given.
    pub async fn update(
        &self,
        id: Uuid,
        if_version: Option<i64>,
        changes: Changes,
    ) -> Result<Product, Error> {
        // Around the change: before, so that a cache out of reach refuses it rather than
        // let orders be priced at the old price; after, for what was cached meanwhile.
        if let Some(snapshots) = &self.snapshots {
            snapshots
                .invalidate()
                .await
                .map_err(Error::CacheUnavailable)?;
        }
        let product = self
            .store
            .update(id, |product| {
                if let Some(expected) = if_version.filter(|v| *v != product.version) {
                    return Err(Error::VersionMismatch {
                        expected,
                        actual: product.version,
                    });
                }
                Ok(product.apply(changes))
            })
            .await?;
        if let Some(snapshots) = &self.snapshots
            && let Err(error) = snapshots.invalidate().await
        {
            // Only a read between the two invalidations could have cached the old
            // values, and it expires with its entry.
            tracing::error!(product_id = %id, error = %error, "cannot invalidate the product snapshots after a change");
        }
        Ok(product)
    }
}
