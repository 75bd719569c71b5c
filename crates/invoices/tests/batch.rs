//! The invoices group issues a polled batch's documents in one transaction: numbered in
//! log order, each once, and a batch with one document that cannot be issued yet issues
//! none of them, so the runner can take its events one at a time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use oxcart_db::{self as db, Db};
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_events::{Metadata, NewEvent, RecordedEvent};
use oxcart_invoices::{InvoiceConfig, InvoiceHandler, Settings};
use oxcart_orders::OrderSource;
use oxcart_orders::domain::Order;
use oxcart_platform::tax::TaxConfig;
use serde_json::json;
use uuid::Uuid;

/// Every order asked for exists, paid, for 29.00 EUR.
struct PaidOrders;

#[async_trait]
impl OrderSource for PaidOrders {
    async fn order(&self, id: Uuid) -> Result<Option<Order>, BoxError> {
        let at = Utc::now();
        Ok(Some(serde_json::from_value(json!({
            "id": id, "customerId": Uuid::nil(), "status": "PAID", "statusReason": null,
            "items": [{ "productId": Uuid::nil(), "sku": "MUG", "name": "Mug", "price": 1450,
                        "quantity": 2, "lineTotal": 2900, "taxClass": "standard" }],
            "currency": "EUR", "totalAmount": 2900,
            "shippingAddress": { "name": "Ada", "line1": "1 Road", "city": "London",
                                 "postalCode": "N1", "country": "GB" },
            "version": 2, "createdAt": at, "updatedAt": at,
        }))?))
    }
}

fn event(event_type: &str, aggregate_id: Uuid, data: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        position: 1,
        version: 2,
        event: NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version: 1,
            aggregate_type: "order".into(),
            aggregate_id,
            user_id: None,
            timestamp: Utc::now(),
            data,
            metadata: Metadata::default(),
        },
    }
}

async fn numbers(db: &Db) -> Vec<(String, String)> {
    db::query_as("SELECT order_id, number FROM invoices ORDER BY number")
        .fetch_all(&mut *db.read_primary().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_of_documents_is_one_transaction_issued_once() {
    let (db, _dir) = oxcart_test_util::sqlite::migrated().await;
    let handler = InvoiceHandler::new(
        db.clone(),
        Arc::new(PaidOrders),
        Settings::new(&InvoiceConfig::default(), &TaxConfig::default()),
    );
    assert!(handler.batches());

    let orders: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut batch: Vec<RecordedEvent> = orders
        .iter()
        .map(|&id| event("order.paid", id, json!({})))
        .collect();
    // Passed over: no document for a shipment.
    batch.push(event("order.shipped", orders[0], json!({})));
    let events: Vec<&RecordedEvent> = batch.iter().collect();
    let (_, before) = db.group_commits().unwrap();
    handler.handle_batch(&events).await.unwrap();
    let (_, after) = db.group_commits().unwrap();
    assert_eq!(after - before, 1, "five invoices, one transaction");
    let issued = numbers(&db).await;
    let year = Utc::now().format("%Y");
    assert_eq!(
        issued,
        orders
            .iter()
            .zip(1..)
            .map(|(id, n)| (id.to_string(), format!("INV-{year}-{n:06}")))
            .collect::<Vec<_>>(),
        "numbered in log order"
    );

    // Delivered again: nothing more is issued.
    handler.handle_batch(&events).await.unwrap();
    assert_eq!(numbers(&db).await, issued);

    // A refund of an order with no invoice yet cannot be credited: the batch issues
    // nothing, and one at a time the invoice goes in while the refund alone fails.
    let (paid, unpaid) = (Uuid::now_v7(), Uuid::now_v7());
    let late = [
        event("order.paid", paid, json!({})),
        event(
            "payment.refunded",
            Uuid::now_v7(),
            json!({ "orderId": unpaid, "refundId": Uuid::now_v7(), "amount": 2900, "reason": "cancelled" }),
        ),
    ];
    let error = handler
        .handle_batch(&late.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no invoice to credit"),
        "{error}"
    );
    assert_eq!(numbers(&db).await, issued);
    handler.handle(&late[0]).await.unwrap();
    assert!(handler.handle(&late[1]).await.is_err());
    assert_eq!(numbers(&db).await.len(), issued.len() + 1);
}
