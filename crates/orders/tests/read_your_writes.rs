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

/// An order service on the memory store with its read model in SQLite, and the
/// projection between them, run by hand.
struct Setup {
    db: oxcart_db::Db,
    _dir: tempfile::TempDir,
    store: Arc<dyn EventStore>,
    product: oxcart_orders::domain::ProductSnapshot,
    runner: ProjectionRunner,
}

async fn setup() -> Setup {
    let (db, _dir) = oxcart_test_util::sqlite::migrated().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let runner = ProjectionRunner::new(
        Arc::clone(&store),
        Arc::new(OrderProjection::new(db.clone())),
    );
    Setup {
        db,
        _dir,
        store,
        product: common::mug(),
        runner,
    }
}

#[tokio::test]
async fn reads_wait_for_the_projection_and_report_when_it_lags() {
    let Setup {
        db,
        _dir,
        store,
        product,
        runner,
    } = setup().await;
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

/// The projection writes a whole batch in a few statements (new orders, their lines, each
/// order's latest status): orders placed, cancelled and left alone in one batch read back
/// exactly as their events make them.
#[tokio::test]
async fn a_batch_leaves_every_order_as_its_events_make_it() {
    let Setup {
        db,
        _dir,
        store,
        product,
        runner,
    } = setup().await;
    let orders = Orders::new(
        Arc::clone(&store),
        Arc::new(OneProduct(product.clone())),
        Arc::new(OrderReadModel::new(db.clone())),
        Duration::from_secs(5),
    );
    let (caller, context) = (common::customer(), common::request());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let placed = orders
            .place(&caller, common::two_of(&product), None, &context)
            .await
            .unwrap();
        ids.push(placed.order.id);
    }
    orders
        .cancel(&caller, ids[0], Some("changed my mind".into()), &context)
        .await
        .unwrap();
    orders
        .cancel(&caller, ids[2], None, &context)
        .await
        .unwrap();

    runner.catch_up().await.unwrap();
    for &id in &ids {
        let read = orders.get(&caller, id, None).await.unwrap();
        let folded = orders.load(id).await.unwrap().unwrap();
        assert_eq!(read, folded);
    }
    let cancelled = orders.get(&caller, ids[0], None).await.unwrap();
    assert_eq!(cancelled.status_reason.as_deref(), Some("changed my mind"));
    assert_eq!(cancelled.items.len(), 1);
}
