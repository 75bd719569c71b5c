//! What the orders crate's tests share: a catalog of one product, a customer, a request
//! and an address.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use oxcart_events::store::BoxError;
use oxcart_orders::ProductCatalog;
use oxcart_orders::domain::{PlaceOrder, ProductSnapshot, ShippingAddress};
use oxcart_platform::auth::{Caller, Role};
use oxcart_platform::http::RequestContext;
use uuid::Uuid;

/// One product, always there: these tests are not about pricing.
pub struct OneProduct(pub ProductSnapshot);

#[async_trait]
impl ProductCatalog for OneProduct {
    async fn snapshots(&self, _ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        Ok(vec![self.0.clone()])
    }
}

pub fn mug() -> ProductSnapshot {
    ProductSnapshot {
        id: Uuid::now_v7(),
        sku: "MUG".into(),
        name: "Mug".into(),
        price: 500,
        currency: "EUR".into(),
        tax_class: "standard".into(),
    }
}

pub fn customer() -> Caller {
    Caller {
        user_id: Uuid::now_v7(),
        role: Role::Customer,
        email: "a@example.com".into(),
        session: None,
    }
}

pub fn request() -> RequestContext {
    RequestContext {
        request_id: "r".into(),
        correlation_id: "c".into(),
    }
}

/// Two of `product`, to an address in London.
pub fn two_of(product: &ProductSnapshot) -> PlaceOrder {
    let address = ShippingAddress {
        name: "Ada".into(),
        line1: "1 Road".into(),
        line2: None,
        city: "London".into(),
        region: None,
        postal_code: "N1".into(),
        country: "GB".into(),
    };
    PlaceOrder::parse(vec![(product.id, 2)], address, "tok_success".into(), None).unwrap()
}
