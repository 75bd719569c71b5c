//! The payments saga on a real SQLite file: a polled batch is decided with the provider
//! called per order, then recorded in one transaction; redelivered, it changes nothing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use oxcart_db::{self as db, Db};
use oxcart_events::consumer::Handler;
use oxcart_events::{EventStore, RecordedEvent};
use oxcart_payments::provider::{Answer, Ledger, Operation, SimulatedProvider, SqlLedger, tokens};
use oxcart_payments::saga::PaymentSaga;
use oxcart_sql::SqlEventStore;
use oxcart_test_util::event_store::event;
use serde_json::json;
use uuid::Uuid;

/// The saga on a migrated SQLite file, and the simulated provider keeping its books in a
/// file of its own, as a real provider keeps them on its side: the saga's database then
/// counts payments' own transactions alone.
async fn saga() -> (Db, Vec<tempfile::TempDir>, Arc<SqlEventStore>, PaymentSaga) {
    let (db, dir) = oxcart_test_util::sqlite::migrated().await;
    let (books, books_dir) = oxcart_test_util::sqlite::migrated().await;
    let store = Arc::new(SqlEventStore::new(db.clone()));
    let provider = SimulatedProvider::new(Arc::new(SqlLedger::new(books)), Duration::ZERO);
    let saga = PaymentSaga::new(db.clone(), store.clone(), Arc::new(provider));
    (db, vec![dir, books_dir], store, saga)
}

#[tokio::test]
async fn a_batch_of_charges_is_recorded_in_one_transaction_besides_the_providers() {
    let (db, _dir, store, saga) = saga().await;

    let orders: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    for (n, &order) in orders.iter().enumerate() {
        let mut created = event(order, "order.created", n as i64);
        created.data = json!({ "customerId": Uuid::now_v7(), "totalAmount": 1450,
                               "currency": "EUR", "paymentToken": tokens::SUCCESS });
        store.append(order, 0, vec![created]).await.unwrap();
    }
    for (n, &order) in orders.iter().enumerate() {
        let reservation = Uuid::now_v7();
        let mut reserved = event(reservation, "stock.reserved", n as i64);
        reserved.aggregate_type = "stock_reservation".into();
        reserved.data = json!({ "orderId": order });
        store.append(reservation, 0, vec![reserved]).await.unwrap();
    }
    let log = store.read_all(0, 100).await.unwrap();
    let batch: Vec<&RecordedEvent> = log.iter().collect();
    assert!(saga.batches());

    let (_, before) = db.group_commits().unwrap();
    saga.handle_batch(&batch).await.unwrap();
    let (_, after) = db.group_commits().unwrap();
    // Everything of payments' own (eight intents, eight outcomes, sixteen claims) is one
    // transaction (the provider's books are in their own file). One at a time it was
    // three an order.
    assert_eq!(after - before, 1);

    let succeeded = |log: &[RecordedEvent]| {
        log.iter()
            .filter(|e| e.event.event_type == "payment.succeeded")
            .count()
    };
    assert_eq!(
        succeeded(&store.read_all(0, 100).await.unwrap()),
        orders.len()
    );
    let charged: i64 = db::query_scalar("SELECT COUNT(*) FROM payments WHERE status = 'succeeded'")
        .fetch_one(&mut *db.read_primary().await.unwrap())
        .await
        .unwrap();
    assert_eq!(charged, orders.len() as i64);

    // Delivered again whole, the batch finds every payment settled: nothing is charged,
    // appended or written.
    saga.handle_batch(&batch).await.unwrap();
    assert_eq!(db.group_commits().unwrap().1, after);
    assert_eq!(
        succeeded(&store.read_all(0, 100).await.unwrap()),
        orders.len()
    );
}

/// Every kind of step in one batch, as the set-wise record writes them: one order charged
/// and then cancelled (refunded), one rejected by the stock before its charge (cancelled,
/// nothing charged), one charged and kept. Each ends as one step at a time would leave it.
#[tokio::test]
async fn a_batch_of_every_step_leaves_each_payment_as_one_at_a_time_would() {
    let (db, _dir, store, saga) = saga().await;

    let (refunded, rejected, kept) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for order in [refunded, rejected, kept] {
        let mut created = event(order, "order.created", 1);
        created.data = json!({ "customerId": Uuid::now_v7(), "totalAmount": 990,
                               "currency": "EUR", "paymentToken": tokens::SUCCESS });
        store.append(order, 0, vec![created]).await.unwrap();
    }
    let stock = |order: Uuid, event_type: &str| {
        let reservation = Uuid::now_v7();
        let mut reply = event(reservation, event_type, 1);
        reply.aggregate_type = "stock_reservation".into();
        reply.data = json!({ "orderId": order });
        (reservation, reply)
    };
    for (order, outcome) in [
        (refunded, "stock.reserved"),
        (rejected, "stock.rejected"),
        (kept, "stock.reserved"),
    ] {
        let (reservation, reply) = stock(order, outcome);
        store.append(reservation, 0, vec![reply]).await.unwrap();
    }
    let mut cancelled = event(refunded, "order.cancelled", 2);
    cancelled.data = json!({ "reason": "changed my mind" });
    store.append(refunded, 1, vec![cancelled]).await.unwrap();

    let log = store.read_all(0, 100).await.unwrap();
    let batch: Vec<&RecordedEvent> = log.iter().collect();
    saga.handle_batch(&batch).await.unwrap();

    let status = |order: Uuid| {
        let db = db.clone();
        async move {
            db::query_scalar::<String>("SELECT status FROM payments WHERE order_id = $1")
                .bind(order.to_string())
                .fetch_one(&mut *db.read_primary().await.unwrap())
                .await
                .unwrap()
        }
    };
    assert_eq!(status(refunded).await, "refunded");
    assert_eq!(status(rejected).await, "cancelled");
    assert_eq!(status(kept).await, "succeeded");
    let outcomes: Vec<(String, String)> = store
        .read_all(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.event_type.starts_with("payment."))
        .map(|e| {
            let order = e.event.data["orderId"].as_str().unwrap().to_owned();
            (e.event.event_type, order)
        })
        .collect();
    let named = |kind: &str, order: Uuid| (kind.to_owned(), order.to_string());
    assert_eq!(
        outcomes,
        [
            named("payment.succeeded", refunded),
            named("payment.succeeded", kept),
            named("payment.refunded", refunded),
        ]
    );
}

/// An operation the simulated provider books, answering with `reference`.
fn charge(reference: &str) -> Operation<'static> {
    Operation {
        kind: "charge",
        amount: 1450,
        currency: "EUR",
        answer: Answer {
            approved: true,
            reference: reference.to_owned(),
            decline_code: None,
        },
    }
}

#[tokio::test]
async fn bookings_made_at_once_share_a_transaction_and_a_key_keeps_its_first_answer() {
    let (db, _dir) = oxcart_test_util::sqlite::migrated().await;
    let ledger = SqlLedger::new(db.clone());

    let (_, before) = db.group_commits().unwrap();
    let keys: Vec<String> = (0..8).map(|n| format!("order-{n}")).collect();
    let answers = futures::future::join_all(
        keys.iter()
            .map(|key| ledger.record(key, charge(&format!("ch_{key}")))),
    )
    .await;
    let (_, after) = db.group_commits().unwrap();
    assert!(
        after - before < keys.len() as u64,
        "eight bookings at once took {} transactions",
        after - before
    );
    for (key, answer) in keys.iter().zip(answers) {
        assert_eq!(answer.unwrap().reference, format!("ch_{key}"));
    }

    // A key booked again (a retried call) keeps its first answer, beside a new key
    // booked at the same moment.
    let again = futures::future::join_all([
        ledger.record("order-3", charge("ch_other")),
        ledger.record("order-9", charge("ch_order-9")),
    ])
    .await;
    let again: Vec<String> = again.into_iter().map(|a| a.unwrap().reference).collect();
    assert_eq!(again, ["ch_order-3", "ch_order-9"]);
    assert_eq!(
        ledger.recorded("order-3").await.unwrap().unwrap().reference,
        "ch_order-3"
    );
}

/// The SQL books pass the ledger contract the DynamoDB ones pass (`oxcart-lambda`).
mod ledger_contract {
    use std::sync::Arc;

    use oxcart_payments::provider::{Ledger, SqlLedger};
    use oxcart_test_util::postgres::TestDatabase;

    async fn sqlite() -> (Arc<dyn Ledger>, tempfile::TempDir) {
        let (db, dir) = oxcart_test_util::sqlite::migrated().await;
        (Arc::new(SqlLedger::new(db)), dir)
    }

    async fn postgres() -> (Arc<dyn Ledger>, TestDatabase) {
        let (db, database) = TestDatabase::migrated().await;
        (Arc::new(SqlLedger::new(db)), database)
    }

    mod on_sqlite {
        use super::sqlite;

        oxcart_test_util::ledger_contract!(sqlite());
    }

    mod on_postgres {
        use super::postgres;

        oxcart_test_util::ledger_contract!(postgres(), #[ignore = "needs PostgreSQL (.ci/services)"]);
    }
}
