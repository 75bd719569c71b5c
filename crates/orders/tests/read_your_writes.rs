//! The query side behind the write side: a read that asks for a version the read model
//! has not reached waits for it, and says so (503, retry) if the projection is not there.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use common::OneProduct;
use oxcart_events::EventStore;
use oxcart_events::memory::MemoryEventStore;
use oxcart_events::projection::ProjectionRunner;
use oxcart_orders::read_model::{OrderProjection, OrderReadModel};
use oxcart_orders::{Error, Orders};

mod common;

#[tokio::test]
async fn reads_wait_for_the_projection_and_report_when_it_lags() {
    let (db, _dir) = oxcart_test_util::sqlite::migrated().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let product = common::mug();
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

    let (caller, context) = (common::customer(), common::request());
    let command = common::two_of(&product);
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
