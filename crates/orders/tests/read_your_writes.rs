//! The query side behind the write side: a read that asks for a version the read model
//! has not reached waits for it, and says so (503, retry) if the projection is not there.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::EventStore;
use oxcart_events::memory::MemoryEventStore;
use oxcart_events::projection::ProjectionRunner;
use oxcart_events::store::BoxError;
use oxcart_orders::domain::{PlaceOrder, ProductSnapshot, ShippingAddress};
use oxcart_orders::read_model::{OrderProjection, OrderReadModel};
use oxcart_orders::{Error, Orders, ProductCatalog};
use oxcart_platform::auth::{Caller, Role};
use oxcart_platform::http::RequestContext;
use uuid::Uuid;

/// One product, always there: this test is about the read side, not pricing.
struct OneProduct(ProductSnapshot);

#[async_trait]
impl ProductCatalog for OneProduct {
    async fn snapshots(&self, _ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        Ok(vec![self.0.clone()])
    }
}

#[tokio::test]
async fn reads_wait_for_the_projection_and_report_when_it_lags() {
    let dir = tempfile::tempdir().unwrap();
    let db = oxcart_sqlite::connect(
        &dir.path().join("read.db"),
        &oxcart_sqlite::SqliteConfig::default(),
    )
    .await
    .unwrap();
    db.migrate(&oxcart_sqlite::MIGRATOR).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let product = ProductSnapshot {
        id: Uuid::now_v7(),
        sku: "MUG".into(),
        name: "Mug".into(),
        price: 500,
        currency: "EUR".into(),
    };
    let runner = ProjectionRunner::new(
        Arc::clone(&store),
        Arc::new(OrderProjection::new(db.clone())),
    );
    // Two handles on the same service: one gives up quickly; the other waits long enough
    // for the projection run by hand below, however loaded the machine.
    let with_wait = |wait| {
        Orders::new(
            Arc::clone(&store),
            Arc::new(OneProduct(product.clone())),
            Arc::new(OrderReadModel::new(db.clone())),
            wait,
        )
        .with_progress(runner.progress())
    };
    let orders = with_wait(Duration::from_millis(200));
    let patient = with_wait(Duration::from_secs(30));

    let caller = Caller {
        user_id: Uuid::now_v7(),
        role: Role::Customer,
        email: "a@example.com".into(),
    };
    let context = RequestContext {
        request_id: "r".into(),
        correlation_id: "c".into(),
    };
    let address = ShippingAddress {
        name: "Ada".into(),
        line1: "1 Road".into(),
        line2: None,
        city: "London".into(),
        region: None,
        postal_code: "N1".into(),
        country: "GB".into(),
    };
    let command = PlaceOrder::parse(vec![(product.id, 2)], address, None).unwrap();
    let placed = orders
        .place(&caller, command, None, &context)
        .await
        .unwrap();
    let id = placed.order.id;

    // Nothing has projected the event yet: without min_version the order is not there,
    // with it the read waits, then asks the client to retry.
    assert!(matches!(
        orders.get(&caller, id, None).await,
        Err(Error::NotFound)
    ));
    let lagging = orders.get(&caller, id, Some(1)).await.unwrap_err();
    assert!(matches!(lagging, Error::Lagging), "{lagging:?}");
    let problem = oxcart_platform::ApiError::from(lagging);
    assert_eq!(problem.problem().status, 503);

    // A read already waiting is woken as soon as the projection applies the event.
    let waiting = {
        let caller = caller.clone();
        tokio::spawn(async move { patient.get(&caller, id, Some(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    runner.catch_up().await.unwrap();
    let read = waiting.await.unwrap().unwrap();
    assert_eq!(read, placed.order);
}
