//! The orders saga applies a polled batch of replies as one append to every order they
//! concern: each order moves on once, a redelivered batch changes nothing, and an order
//! another writer moves meanwhile is decided again on its new state.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::OneProduct;
use oxcart_events::consumer::Handler;
use oxcart_events::memory::MemoryEventStore;
use oxcart_events::{
    Appended, Error, EventStore, Metadata, NewEvent, Position, RecordedEvent, StreamAppend,
};
use oxcart_orders::Orders;
use oxcart_orders::domain::{Order, OrderStatus};
use oxcart_orders::read_model::OrderReadModel;
use oxcart_orders::saga::OrderSaga;
use serde_json::json;
use uuid::Uuid;

mod common;

/// The in-memory store, counting the appends that reach it; `race` names an order that
/// a customer cancels just before the next append of several streams lands.
struct Watched {
    inner: MemoryEventStore,
    appends: AtomicUsize,
    race: Mutex<Option<Uuid>>,
}

#[async_trait]
impl EventStore for Watched {
    async fn append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner
            .append(aggregate_id, expected_version, events)
            .await
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, Error> {
        let race = self.race.lock().unwrap().take();
        if let Some(id) = race {
            let history = self.inner.read_stream(id).await?;
            let order = Order::from_history(&history).unwrap().unwrap();
            let cancelled = order.cancel(order.customer_id, None).unwrap();
            let event = NewEvent {
                event_id: Uuid::now_v7(),
                event_type: cancelled.event_type().to_owned(),
                schema_version: 1,
                aggregate_type: "order".into(),
                aggregate_id: id,
                user_id: Some(order.customer_id),
                timestamp: Utc::now(),
                data: cancelled.data(),
                metadata: Metadata::default(),
            };
            self.inner.append(id, order.version, vec![event]).await?;
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_many(appends).await
    }

    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_stream(aggregate_id).await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_all(after, limit).await
    }

    async fn head(&self) -> Result<Position, Error> {
        self.inner.head().await
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<Position> {
        self.inner.subscribe()
    }
}

/// A payment service's reply about `order`, as it would stand in the log.
fn reply(event_type: &str, order: Uuid, position: Position) -> RecordedEvent {
    let payment = Uuid::now_v7();
    RecordedEvent {
        position,
        version: 2,
        event: NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version: 1,
            aggregate_type: "payment".into(),
            aggregate_id: payment,
            user_id: None,
            timestamp: Utc::now(),
            data: json!({ "orderId": order, "paymentId": payment.to_string(), "amount": 1000, "reason": "card declined" }),
            metadata: Metadata::default(),
        },
    }
}

#[tokio::test]
async fn a_batch_of_replies_is_one_append_and_a_redelivery_changes_nothing() {
    let (db, _dir) = oxcart_test_util::sqlite::migrated().await;
    let store = Arc::new(Watched {
        inner: MemoryEventStore::new(),
        appends: AtomicUsize::new(0),
        race: Mutex::new(None),
    });
    let product = common::mug();
    let orders = Orders::new(
        store.clone(),
        Arc::new(OneProduct(product.clone())),
        Arc::new(OrderReadModel::new(db.clone())),
        Duration::from_millis(100),
    );
    let (caller, context) = (common::customer(), common::request());
    let mut ids = Vec::new();
    for _ in 0..7 {
        let command = common::two_of(&product);
        let placed = orders
            .place(&caller, command, None, &context)
            .await
            .unwrap();
        ids.push(placed.order.id);
    }
    let saga = OrderSaga::new(orders.clone());
    assert!(saga.batches());

    // Five replies for five orders, and an event the saga passes over.
    let mut batch: Vec<RecordedEvent> = ids[..4]
        .iter()
        .zip(100..)
        .map(|(&id, position)| reply("payment.succeeded", id, position))
        .collect();
    batch.push(reply("payment.failed", ids[4], 104));
    batch.push(reply("payment.refunded", ids[0], 105));
    let events: Vec<&RecordedEvent> = batch.iter().collect();
    let before = store.appends.load(Ordering::SeqCst);
    saga.handle_batch(&events).await.unwrap();
    assert_eq!(
        store.appends.load(Ordering::SeqCst) - before,
        1,
        "the whole batch is one append"
    );
    let status = |id| {
        let orders = orders.clone();
        async move { orders.load(id).await.unwrap().unwrap() }
    };
    for &id in &ids[..4] {
        let order = status(id).await;
        assert_eq!((order.status, order.version), (OrderStatus::Paid, 2));
    }
    assert_eq!(status(ids[4]).await.status, OrderStatus::PaymentFailed);
    for &id in &ids[5..] {
        assert_eq!(status(id).await.status, OrderStatus::Created);
    }

    // Delivered again (a crash before the group's position moved on): nothing changes.
    let head = store.head().await.unwrap();
    saga.handle_batch(&events).await.unwrap();
    assert_eq!(store.head().await.unwrap(), head);

    // A customer cancels the sixth order while the saga decides on it: the batch is
    // decided again on what the log then says. The cancelled order takes no payment,
    // the seventh still does, and a failure reported for an order already paid changes
    // nothing.
    *store.race.lock().unwrap() = Some(ids[5]);
    let late = [
        reply("payment.succeeded", ids[5], 106),
        reply("payment.failed", ids[0], 107),
        reply("payment.succeeded", ids[6], 108),
    ];
    let before = store.appends.load(Ordering::SeqCst);
    saga.handle_batch(&late.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        store.appends.load(Ordering::SeqCst) - before,
        2,
        "the conflict, then the batch decided again"
    );
    let cancelled = status(ids[5]).await;
    assert_eq!(
        (cancelled.status, cancelled.version),
        (OrderStatus::Cancelled, 2)
    );
    assert_eq!(status(ids[6]).await.status, OrderStatus::Paid);
    let first = status(ids[0]).await;
    assert_eq!((first.status, first.version), (OrderStatus::Paid, 2));
}
