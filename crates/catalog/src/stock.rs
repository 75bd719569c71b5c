//! The catalog's part in the order saga: reserving stock when an order is placed and
//! giving it back when the order fails or is cancelled.
//!
//! Every step runs in the transaction that claims the event (so a redelivery does
//! nothing): it changes the stock, records the reservation and appends the outcome
//! (`stock.reserved`, `stock.rejected`, `stock.released`) through the outbox. All of it is
//! rows, so a polled batch of orders is reserved in one transaction ([`InTransaction`]).

use std::sync::Arc;

use async_trait::async_trait;
use oxcart_events::bus::topics;
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::{NewEvent, Position, RecordedEvent};
use oxcart_platform::db::{self, Db, Tx};
use oxcart_sql::{Apply, InTransaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

pub const GROUP: &str = "catalog-service";
pub const AGGREGATE: &str = "reservation";

/// Namespace of reservation ids, derived from order ids: one reservation per order.
const RESERVATIONS: Uuid = Uuid::from_u128(0x6f78_6361_7274_5265_7365_7276_6174_696f);

/// The stream id of an order's reservation.
pub fn reservation_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&RESERVATIONS, order_id.as_bytes())
}

/// What the catalog reads of `order.created`: only the lines (a tolerant reader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Deserialize)]
struct OrderCreated {
    items: Vec<Line>,
}

/// A product that could not cover its line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Shortage {
    product_id: Uuid,
    requested: i64,
    available: i64,
}

/// The consumer group `catalog-service`.
pub type StockHandler = InTransaction<Stock>;

/// The catalog's steps in the saga, on the transaction of the event that calls for them.
pub struct Stock {
    outbox: Arc<dyn Outbox>,
}

impl Stock {
    /// The group's handler; `outbox` is where its replies are appended.
    pub fn handler(db: Db, outbox: Arc<dyn Outbox>) -> StockHandler {
        InTransaction::new(
            db,
            Self {
                outbox: outbox.clone(),
            },
        )
        .with_outbox(outbox)
    }

    #[tracing::instrument(name = "reserve stock", skip_all, fields(order.id = %cause.event.aggregate_id))]
    async fn reserve(&self, tx: &mut Tx, cause: &RecordedEvent) -> Result<Position, BoxError> {
        let order_id = cause.event.aggregate_id;
        let created: OrderCreated = serde_json::from_value(cause.event.data.clone())?;
        let mut shortages = Vec::new();
        for line in &created.items {
            let available: Option<i64> =
                db::query_scalar("SELECT stock FROM products WHERE id = $1")
                    .bind(line.product_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            let available = available.unwrap_or(0);
            if available < line.quantity {
                shortages.push(Shortage {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available,
                });
            }
        }
        let (status, event_type, data) = if shortages.is_empty() {
            for line in &created.items {
                take(tx, line.product_id, -line.quantity).await?;
            }
            let data = json!({ "orderId": order_id, "items": created.items });
            ("reserved", "stock.reserved", data)
        } else {
            let data =
                json!({ "orderId": order_id, "reason": "out of stock", "shortages": shortages });
            ("rejected", "stock.rejected", data)
        };
        let now = db::timestamp(db::now());
        db::query(
            "INSERT INTO stock_reservations (order_id, status, items, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(order_id.to_string())
        .bind(status)
        .bind(serde_json::to_string(&created.items)?)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
        let id = reservation_id(order_id);
        let event = NewEvent::caused_by(cause, event_type, AGGREGATE, id, data);
        let appended = self.outbox.append_in(tx, id, 0, vec![event]).await?;
        tracing::info!(order_id = %order_id, outcome = status, "stock reservation");
        Ok(appended.position)
    }

    #[tracing::instrument(name = "release stock", skip_all)]
    async fn release(
        &self,
        tx: &mut Tx,
        cause: &RecordedEvent,
    ) -> Result<Option<Position>, BoxError> {
        let order_id = cause.event.aggregate_id;
        let items: Option<String> = db::query_scalar(
            "SELECT items FROM stock_reservations WHERE order_id = $1 AND status = 'reserved'",
        )
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(items) = items else {
            // Nothing held for this order (rejected, or already released): the claim
            // records that the event was seen.
            return Ok(None);
        };
        let items: Vec<Line> = serde_json::from_str(&items)?;
        for line in &items {
            take(tx, line.product_id, line.quantity).await?;
        }
        db::query(
            "UPDATE stock_reservations SET status = 'released', updated_at = $1 WHERE order_id = $2",
        )
        .bind(db::timestamp(db::now()))
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await?;
        let id = reservation_id(order_id);
        let data = json!({ "orderId": order_id, "items": items, "reason": cause.event.event_type });
        let event = NewEvent::caused_by(cause, "stock.released", AGGREGATE, id, data);
        let appended = self.outbox.append_in(tx, id, 1, vec![event]).await?;
        tracing::info!(order_id = %order_id, "stock released");
        Ok(Some(appended.position))
    }
}

/// Adds `delta` to a product's stock (negative to take), bumping its version so that
/// ETags change with it.
async fn take(conn: &mut AnyConnection, product: Uuid, delta: i64) -> Result<(), BoxError> {
    let updated = db::query(
        "UPDATE products SET stock = stock + $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND stock + $1 >= 0",
    )
    .bind(delta)
    .bind(db::timestamp(db::now()))
    .bind(product.to_string())
    .execute(conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(format!("product {product} cannot change its stock by {delta}").into());
    }
    Ok(())
}

#[async_trait]
impl Apply for Stock {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS]
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        matches!(
            event.event.event_type.as_str(),
            "order.created" | "order.payment_failed" | "order.cancelled"
        )
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        event: &RecordedEvent,
    ) -> Result<Option<Position>, BoxError> {
        match event.event.event_type.as_str() {
            "order.created" => self.reserve(tx, event).await.map(Some),
            _ => self.release(tx, event).await,
        }
    }
}
