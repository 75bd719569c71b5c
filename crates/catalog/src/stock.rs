//! The catalog's part in the order saga: reserving stock when an order is placed and
//! giving it back when the order fails or is cancelled.
//!
//! Every step runs in the transaction that claims the event (so a redelivery does
//! nothing): it changes the stock, records the reservation and appends the outcome
//! (`stock.reserved`, `stock.rejected`, `stock.released`) through the outbox. All of it is
//! rows, so a polled batch of orders is reserved in one transaction ([`InTransaction`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use oxcart_db::{self as db, Backend, Db, Tx};
use oxcart_events::bus::topics;
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::types::{order, stock};
use oxcart_events::{NewEvent, Position, RecordedEvent, StreamAppend, trace};
use oxcart_sql::{Apply, InTransaction, apply_each};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
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
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: i64,
    pub available: i64,
}

/// The payloads of the catalog's events, each built in one place, which the fixtures in
/// `fixtures/events` hold to their contracts (`oxcart_events::evolution`).
pub mod payload {
    use serde_json::{Value, json};
    use uuid::Uuid;

    use super::{Line, Shortage};

    /// `stock.reserved`: the order's lines are set aside.
    pub fn reserved(order_id: Uuid, items: &[Line]) -> Value {
        json!({ "orderId": order_id, "items": items })
    }

    /// `stock.rejected`: the lines that could not be covered.
    pub fn rejected(order_id: Uuid, shortages: &[Shortage]) -> Value {
        json!({ "orderId": order_id, "reason": "out of stock", "shortages": shortages })
    }

    /// `stock.released`: what was set aside is back on sale, because of `reason` (the
    /// event that called for it).
    pub fn released(order_id: Uuid, items: &[Line], reason: &str) -> Value {
        json!({ "orderId": order_id, "items": items, "reason": reason })
    }
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

    /// Reserves the stock of a run of placed orders, in log order, in a few statements
    /// whatever their number: the products' stock read once, each order decided in turn
    /// against what the ones before it took, then the products, the reservations and the
    /// replies written each in one multi-row statement.
    async fn reserve_all(
        &self,
        tx: &mut Tx,
        causes: &[&RecordedEvent],
        in_spans: bool,
    ) -> Result<Option<Position>, BoxError> {
        let mut orders = Vec::with_capacity(causes.len());
        for cause in causes {
            let created: OrderCreated = serde_json::from_value(cause.event.data.clone())?;
            orders.push((*cause, created.items));
        }
        let mut products: Vec<Uuid> = orders
            .iter()
            .flat_map(|(_, items)| items.iter().map(|line| line.product_id))
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut available: HashMap<Uuid, i64> = HashMap::with_capacity(products.len());
        // On PostgreSQL the products are locked as they are read, in id order, as every
        // change of stock here takes them: transactions taking stock of the same products
        // at once (a group's members in distributed mode, or a batch's events delivered
        // one at a time after it failed) then queue instead of deadlocking, and the stock
        // read is the stock updated. (SQLite's one writer has no such race.)
        let lock = if tx.backend() == Backend::Postgres {
            " ORDER BY id FOR UPDATE"
        } else {
            ""
        };
        for chunk in products.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id, stock FROM products WHERE id IN ({}){lock}",
                db::params(chunk.len(), 1)
            );
            let mut select = db::query(&sql);
            for id in chunk {
                select = select.bind(id.to_string());
            }
            for row in select.fetch_all(&mut **tx).await? {
                let id: String = row.try_get("id")?;
                available.insert(id.parse()?, row.try_get("stock")?);
            }
        }

        let mut taken: HashMap<Uuid, i64> = HashMap::new();
        let mut reservations = Vec::with_capacity(orders.len());
        let mut replies = Vec::with_capacity(orders.len());
        for (cause, items) in &orders {
            // Each order's spans, as its trace shows them: the consumer's, the decision
            // and the reply's append, whose context the reply carries to its consumers.
            // The rows are written for the whole batch below.
            let process = in_spans.then(|| trace::process_span(GROUP, cause, 1));
            let _process = process.as_ref().map(tracing::Span::enter);
            let order_id = cause.event.aggregate_id;
            let reserve = tracing::info_span!("reserve stock", order.id = %order_id);
            let _reserve = reserve.enter();
            let shortages: Vec<Shortage> = items
                .iter()
                .filter_map(|line| {
                    let left = available.get(&line.product_id).copied().unwrap_or(0);
                    (left < line.quantity).then_some(Shortage {
                        product_id: line.product_id,
                        requested: line.quantity,
                        available: left,
                    })
                })
                .collect();
            let (status, event_type, data) = if shortages.is_empty() {
                for line in items {
                    *available.entry(line.product_id).or_default() -= line.quantity;
                    *taken.entry(line.product_id).or_default() += line.quantity;
                }
                let data = payload::reserved(order_id, items);
                ("reserved", stock::RESERVED, data)
            } else {
                let data = payload::rejected(order_id, &shortages);
                ("rejected", stock::REJECTED, data)
            };
            tracing::info!(order_id = %order_id, outcome = status, "stock reservation");
            reservations.push((order_id, status, serde_json::to_string(items)?));
            let id = reservation_id(order_id);
            let mut events = vec![NewEvent::caused_by(cause, event_type, AGGREGATE, id, data)];
            trace::stamp(&trace::append_span(&events), &mut events);
            replies.push(StreamAppend {
                aggregate_id: id,
                expected_version: 0,
                events,
            });
        }

        let now = db::timestamp(db::now());
        let taken: Vec<(Uuid, i64)> = taken.into_iter().collect();
        for chunk in taken.chunks(db::ROWS_PER_STATEMENT) {
            take_all(tx, chunk, &now).await?;
        }
        for chunk in reservations.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO stock_reservations (order_id, status, items, created_at, updated_at) VALUES {}",
                db::values(chunk.len(), 5, 1)
            );
            let mut insert = db::query(&sql);
            for (order_id, status, items) in chunk {
                insert = insert
                    .bind(order_id.to_string())
                    .bind(*status)
                    .bind(items)
                    .bind(&now)
                    .bind(&now);
            }
            insert.execute(&mut **tx).await?;
        }
        let appended = self.outbox.append_all_in(tx, replies).await?;
        Ok(appended.iter().map(|one| one.position).max())
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
        // In id order, as `reserve_all` locks them (see there).
        let mut lines: Vec<&Line> = items.iter().collect();
        lines.sort_by_key(|line| line.product_id);
        for line in lines {
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
        let data = payload::released(order_id, &items, &cause.event.event_type);
        let event = NewEvent::caused_by(cause, stock::RELEASED, AGGREGATE, id, data);
        let appended = self.outbox.append_in(tx, id, 1, vec![event]).await?;
        tracing::info!(order_id = %order_id, "stock released");
        Ok(Some(appended.position))
    }
}

/// Takes `quantity` of each product's stock in one statement, bumping each version once
/// so that ETags change with it; fails, as [`take`] does, if any would go below zero.
async fn take_all(tx: &mut Tx, taken: &[(Uuid, i64)], now: &str) -> Result<(), BoxError> {
    let sql = format!(
        "WITH taken (id, quantity) AS (VALUES {}) \
         UPDATE products SET stock = stock - taken.quantity, version = version + 1, updated_at = ${} \
         FROM taken WHERE products.id = taken.id AND products.stock - taken.quantity >= 0",
        db::values(taken.len(), 2, 1),
        taken.len() * 2 + 1
    );
    let mut update = db::query(&sql);
    for (product, quantity) in taken {
        update = update.bind(product.to_string()).bind(*quantity);
    }
    let updated = update.bind(now).execute(&mut **tx).await?;
    if updated.rows_affected() != taken.len() as u64 {
        return Err(format!("{} products cannot give the stock taken", taken.len()).into());
    }
    Ok(())
}

fn is_placed(event: &RecordedEvent) -> bool {
    event.event.event_type == order::CREATED
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
            order::CREATED | order::PAYMENT_FAILED | order::CANCELLED
        )
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        event: &RecordedEvent,
    ) -> Result<Option<Position>, BoxError> {
        match event.event.event_type.as_str() {
            order::CREATED => self.reserve_all(tx, &[event], false).await,
            _ => self.release(tx, event).await,
        }
    }

    /// Each run of placed orders is reserved together; a release (rare: a failed or
    /// cancelled order) goes alone, in its place in the log.
    async fn apply_all(
        &self,
        tx: &mut Tx,
        events: &[&RecordedEvent],
        in_spans: bool,
    ) -> Result<Option<Position>, BoxError> {
        let mut appended = None;
        for run in events.chunk_by(|a, b| is_placed(a) == is_placed(b)) {
            let position = if is_placed(run[0]) {
                self.reserve_all(tx, run, in_spans).await?
            } else {
                apply_each(self, tx, run, in_spans).await?
            };
            appended = position.or(appended);
        }
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stock payload the catalog ever stored reads as today's shape; what it writes
    /// today is its current version's (see `oxcart_events::evolution`).
    #[test]
    fn stored_payloads_of_every_version_read_as_today() {
        let (order, product) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let lines = [Line {
            product_id: product,
            quantity: 2,
        }];
        let shortages = [Shortage {
            product_id: product,
            requested: 2,
            available: 1,
        }];
        oxcart_test_util::evolution::check_fixtures(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events"),
            "stock.",
            &[
                (stock::RESERVED, payload::reserved(order, &lines)),
                (stock::REJECTED, payload::rejected(order, &shortages)),
                (
                    stock::RELEASED,
                    payload::released(order, &lines, "order.cancelled"),
                ),
            ],
            |_, data| {
                // What the order saga reads of every stock event.
                data["orderId"]
                    .as_str()
                    .and_then(|id| id.parse::<Uuid>().ok())
                    .map(|_| ())
                    .ok_or_else(|| "no orderId".to_owned())
            },
        );
    }
}
