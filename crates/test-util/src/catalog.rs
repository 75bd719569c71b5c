//! The contract of the catalog port orders price through: in-process (the catalog's own
//! tables) or over HTTP (another service's `GET /api/products/{id}`), the same products
//! with the same prices. Every adapter runs it through
//! [`product_catalog_contract!`](crate::product_catalog_contract).

use std::sync::Arc;

use oxcart_orders::ProductCatalog;
use oxcart_orders::domain::ProductSnapshot;
use uuid::Uuid;

/// Runs the contract against what `$make` yields, as `(Priced, guard)`. Attributes after
/// it go on every test.
#[macro_export]
macro_rules! product_catalog_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::contract_tests!(catalog; $make; [$(#[$meta])*];
            snapshots_carry_what_the_catalog_says,
            unknown_products_are_left_out,
            no_ids_no_snapshots,
        );
    };
}

/// A catalog port, and the products its catalog holds (at least two, in the catalog's
/// words: sku upper-cased, prices in minor units).
pub struct Priced {
    pub catalog: Arc<dyn ProductCatalog>,
    pub products: Vec<ProductSnapshot>,
}

fn by_id(mut snapshots: Vec<ProductSnapshot>) -> Vec<ProductSnapshot> {
    snapshots.sort_by_key(|p| p.id);
    snapshots
}

pub async fn snapshots_carry_what_the_catalog_says(priced: Priced) {
    assert!(priced.products.len() >= 2);
    let ids: Vec<Uuid> = priced.products.iter().map(|p| p.id).collect();
    let snapshots = priced.catalog.snapshots(&ids).await.unwrap();
    assert_eq!(by_id(snapshots), by_id(priced.products));
}

pub async fn unknown_products_are_left_out(priced: Priced) {
    let known = priced.products[0].clone();
    let snapshots = priced
        .catalog
        .snapshots(&[Uuid::now_v7(), known.id])
        .await
        .unwrap();
    assert_eq!(snapshots, [known]);
}

pub async fn no_ids_no_snapshots(priced: Priced) {
    assert_eq!(priced.catalog.snapshots(&[]).await.unwrap(), []);
}
