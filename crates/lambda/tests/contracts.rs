//! The serverless adapters pass the contracts their SQL counterparts pass, against moto's
//! DynamoDB: the order views (kept by the worker's projection handler) and the simulated
//! provider's books.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oxcart_dynamodb::{DynamoEventStore, create_state_table, local_config};
use oxcart_events::EventStore;
use oxcart_events::consumer::Handler;
use oxcart_lambda::ledger::DynamoLedger;
use oxcart_lambda::views::{DynamoOrderViews, OrderViewProjection, create_orders_table};
use oxcart_payments::provider::Ledger;
use oxcart_test_util::moto::Moto;
use oxcart_test_util::order_views::Views;

/// moto one request at a time: the contracts race conditional writes on purpose.
async fn dynamodb() -> (aws_sdk_dynamodb::Client, Moto) {
    let moto = Moto::start_one_at_a_time().await;
    let client = aws_sdk_dynamodb::Client::new(&local_config(&moto.endpoint));
    (client, moto)
}

/// The views in the orders table, kept by the worker's handler, fed every event in the
/// log (it folds each order's stream again, so feeding one twice is harmless).
async fn views() -> (Views, Moto) {
    let (client, moto) = dynamodb().await;
    let events = DynamoEventStore::new(client.clone(), "oxcart-events");
    events.create_table().await.unwrap();
    create_orders_table(&client, "oxcart-orders").await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(events);
    let views = DynamoOrderViews::new(client, "oxcart-orders");
    let handler = Arc::new(OrderViewProjection::new(Arc::clone(&store), views.clone()));
    let log = Arc::clone(&store);
    let under_test = Views {
        views: Arc::new(views),
        store,
        catch_up: Box::new(move || {
            let (log, handler) = (Arc::clone(&log), Arc::clone(&handler));
            Box::pin(async move {
                for event in log.read_all(0, 10_000).await.unwrap() {
                    handler.handle(&event).await.unwrap();
                }
            })
        }),
    };
    (under_test, moto)
}

async fn ledger() -> (Arc<dyn Ledger>, Moto) {
    let (client, moto) = dynamodb().await;
    create_state_table(&client, "oxcart-state").await.unwrap();
    (Arc::new(DynamoLedger::new(client, "oxcart-state")), moto)
}

mod order_views {
    use super::*;

    oxcart_test_util::order_views_contract!(views(), #[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]);
}

mod ledger {
    use super::*;

    oxcart_test_util::ledger_contract!(ledger(), #[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]);
}
