//! Analytics: what sold, for how much, and how payments went.
//!
//! # Layout
//! - [`AnalyticsHandler`]: the consumer (`analytics-service`) that keeps one row per order
//!   and per line, current with every order and payment event.
//! - [`Analytics::summary`]: the aggregates over a date range.
//! - [`http`]: `GET /api/analytics/summary?from=&to=` for admins.
//! - [`build`]: the service on its database.
//!
//! Revenue is the value of orders that were paid and not cancelled (PAID, SHIPPED,
//! DELIVERED), per currency: amounts in different currencies are never added up.

pub mod http;

use async_trait::async_trait;
use chrono::NaiveDate;
use indexmap::IndexMap;
use oxcart_db::{self as db, Db, Tx};
use oxcart_events::Position;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topics;
use oxcart_events::store::BoxError;
use oxcart_events::trace;
use oxcart_events::types::payment;
use oxcart_orders::domain::{OrderCreated, OrderEvent, OrderStatus};
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{ProblemKind, ServiceError};
use oxcart_sql::{Apply, InTransaction};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

pub const GROUP: &str = "analytics-service";

pub const ABOUT: About = About {
    name: "analytics",
    description: "Sales and payment figures for admins.",
    openapi: || http::routes().into_openapi(),
};

/// Analytics on `db`: the summary route and the consumer that keeps its tables.
pub fn build(db: Db) -> Parts {
    Parts::routes(http::router(Analytics::new(db.clone())))
        .with_handler(std::sync::Arc::new(Sales::handler(db)))
}

/// The statuses whose orders count as revenue.
const EARNING: &str = "('PAID', 'SHIPPED', 'DELIVERED')";

/// The consumer group `analytics-service`: every effect is rows, so a polled batch of
/// events is applied in one transaction.
pub type AnalyticsHandler = InTransaction<Sales>;

/// What the order and payment events change in the analytics tables.
pub struct Sales;

impl Sales {
    pub fn handler(db: Db) -> AnalyticsHandler {
        InTransaction::new(db, Self)
    }
}

/// What one event changes in the analytics tables.
enum Change {
    Placed(Box<OrderCreated>),
    Status(OrderStatus),
    /// The outcome of the order's charge, `succeeded` or `failed`.
    Payment(&'static str),
    /// Money given back: the refund's id and amount.
    Refund(String, i64),
}

impl Change {
    fn of(event: &RecordedEvent) -> Result<Option<Self>, BoxError> {
        let kind = event.event.event_type.as_str();
        Ok(Some(match kind {
            payment::SUCCEEDED => Self::Payment("succeeded"),
            payment::FAILED => Self::Payment("failed"),
            payment::REFUNDED => {
                let data = &event.event.data;
                let id = data["refundId"]
                    .as_str()
                    .ok_or("payment.refunded without a refundId")?;
                let amount = data["amount"]
                    .as_i64()
                    .ok_or("payment.refunded without an amount")?;
                Self::Refund(id.to_owned(), amount)
            }
            _ => match OrderEvent::decode(kind, &event.event.data)? {
                None => return Ok(None),
                Some(OrderEvent::Created(created)) => Self::Placed(created),
                Some(other) => match other.status() {
                    Some(status) => Self::Status(status),
                    // A refund request: the refund itself is counted when it is made.
                    None => return Ok(None),
                },
            },
        }))
    }
}

#[async_trait]
impl Apply for Sales {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS, topics::PAYMENTS]
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        let kind = event.event.event_type.as_str();
        kind.starts_with("order.")
            || matches!(
                kind,
                payment::SUCCEEDED | payment::FAILED | payment::REFUNDED
            )
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        event: &RecordedEvent,
    ) -> Result<Option<Position>, BoxError> {
        self.apply_all(tx, &[event], false).await
    }

    /// The batch in a few multi-row statements (new orders, their lines, each order's
    /// latest status, each order's latest payment outcome, refunds), in that order, which
    /// is the order that matters: an order's status is written after its row exists.
    async fn apply_all(
        &self,
        tx: &mut Tx,
        events: &[&RecordedEvent],
        in_spans: bool,
    ) -> Result<Option<Position>, BoxError> {
        let mut rows = Rows::default();
        for event in events {
            // The span covers what the event changes; the rows are written for the whole
            // batch below.
            let span = in_spans.then(|| trace::process_span(GROUP, event, 1));
            let _entered = span.as_ref().map(tracing::Span::enter);
            rows.add(event)?;
        }
        rows.write(tx).await?;
        Ok(None)
    }
}

/// What a batch of events changes in the analytics tables, by statement.
#[derive(Default)]
struct Rows<'a> {
    placed: Vec<(String, &'a RecordedEvent, Box<OrderCreated>)>,
    /// Each order's latest status (an insert keeps the order's place, takes the value).
    statuses: IndexMap<String, OrderStatus>,
    /// Each order's latest payment outcome.
    payments: IndexMap<String, &'static str>,
    /// Refunds: (refund id, order id, amount).
    refunds: Vec<(String, String, i64)>,
}

impl<'a> Rows<'a> {
    fn add(&mut self, event: &'a RecordedEvent) -> Result<(), BoxError> {
        let Some(change) = Change::of(event)? else {
            return Ok(());
        };
        let order_id = event.event.aggregate_id.to_string();
        match change {
            Change::Placed(created) => self.placed.push((order_id, event, created)),
            Change::Status(status) => {
                self.statuses.insert(order_id, status);
            }
            Change::Payment(outcome) => {
                // A payment event's aggregate is the payment; it names its order.
                let order_id = event.event.data["orderId"]
                    .as_str()
                    .ok_or("payment event without an orderId")?;
                self.payments.insert(order_id.to_owned(), outcome);
            }
            Change::Refund(refund_id, amount) => {
                let order_id = event.event.data["orderId"]
                    .as_str()
                    .ok_or("payment event without an orderId")?;
                self.refunds.push((refund_id, order_id.to_owned(), amount));
            }
        }
        Ok(())
    }

    async fn write(self, tx: &mut Tx) -> Result<(), BoxError> {
        for chunk in self.placed.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO analytics_orders (order_id, day, status, currency, total, created_at) \
                 VALUES {} ON CONFLICT (order_id) DO NOTHING",
                db::values(chunk.len(), 6, 1)
            );
            let mut insert = db::query(&sql);
            for (order_id, event, created) in chunk {
                insert = insert
                    .bind(order_id)
                    .bind(event.event.timestamp.date_naive().to_string())
                    .bind(OrderStatus::Created.as_str())
                    .bind(&created.currency)
                    .bind(created.total_amount)
                    .bind(db::timestamp(event.event.timestamp));
            }
            insert.execute(&mut **tx).await?;
        }
        let lines: Vec<_> = self
            .placed
            .iter()
            .flat_map(|(order_id, _, created)| created.items.iter().map(move |l| (order_id, l)))
            .collect();
        for chunk in lines.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO analytics_order_lines (order_id, product_id, sku, name, quantity, line_total) \
                 VALUES {} ON CONFLICT (order_id, product_id) DO NOTHING",
                db::values(chunk.len(), 6, 1)
            );
            let mut insert = db::query(&sql);
            for (order_id, line) in chunk {
                insert = insert
                    .bind(*order_id)
                    .bind(line.product_id.to_string())
                    .bind(&line.sku)
                    .bind(&line.name)
                    .bind(i64::from(line.quantity))
                    .bind(line.line_total);
            }
            insert.execute(&mut **tx).await?;
        }
        let statuses: Vec<_> = self.statuses.into_iter().collect();
        for chunk in statuses.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH changed (order_id, status) AS (VALUES {}) \
                 UPDATE analytics_orders SET status = changed.status \
                 FROM changed WHERE analytics_orders.order_id = changed.order_id",
                db::values(chunk.len(), 2, 1)
            );
            let mut update = db::query(&sql);
            for (order_id, status) in chunk {
                update = update.bind(order_id).bind(status.as_str());
            }
            update.execute(&mut **tx).await?;
        }
        // Its own table: the payment may be heard of before the order is.
        let payments: Vec<_> = self.payments.into_iter().collect();
        for chunk in payments.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO analytics_payments (order_id, outcome) VALUES {} \
                 ON CONFLICT (order_id) DO UPDATE SET outcome = excluded.outcome",
                db::values(chunk.len(), 2, 1)
            );
            let mut upsert = db::query(&sql);
            for (order_id, outcome) in chunk {
                upsert = upsert.bind(order_id).bind(*outcome);
            }
            upsert.execute(&mut **tx).await?;
        }
        for chunk in self.refunds.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO analytics_refunds (refund_id, order_id, amount) VALUES {} \
                 ON CONFLICT (refund_id) DO NOTHING",
                db::values(chunk.len(), 3, 1)
            );
            let mut insert = db::query(&sql);
            for (refund_id, order_id, amount) in chunk {
                insert = insert.bind(refund_id).bind(order_id).bind(*amount);
            }
            insert.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Orders and their value on one day in one status and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStatus {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    pub status: String,
    pub currency: String,
    pub orders: i64,
    /// Sum of the orders' totals, minor units.
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revenue {
    pub currency: String,
    /// Net revenue: what paid orders brought in, less what was refunded of them. Minor
    /// units.
    pub amount: i64,
    /// What the paid orders came to before refunds.
    pub gross: i64,
    /// What was refunded of them.
    pub refunded: i64,
    /// Paid orders this revenue comes from.
    pub orders: i64,
    /// `gross / orders`, rounded to the nearest minor unit.
    pub average_order_value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopProduct {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// Units sold in paid orders.
    pub quantity: i64,
    pub revenue: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOutcomes {
    pub succeeded: i64,
    pub failed: i64,
    /// `succeeded / (succeeded + failed)`; null when no order was charged.
    pub success_rate: Option<f64>,
}

/// Aggregates over the orders placed from `from` to `to` (UTC days, both included).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub orders: i64,
    /// Orders per current status.
    pub by_status: std::collections::BTreeMap<String, i64>,
    pub revenue: Vec<Revenue>,
    pub by_day: Vec<DayStatus>,
    /// The ten best-selling products by units in paid orders.
    pub top_products: Vec<TopProduct>,
    pub payments: PaymentOutcomes,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the analytics tables hold an unreadable {0}")]
    Corrupt(String),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Corrupt(_) => ProblemKind::Internal,
            Self::Storage(e) => ProblemKind::of_storage(e),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Analytics {
    db: Db,
}

impl Analytics {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn summary(&self, from: NaiveDate, to: NaiveDate) -> Result<Summary, Error> {
        let (start, end) = (from.to_string(), to.to_string());
        let range = "day >= $1 AND day <= $2";
        let mut reader = self.db.read().await?;

        let rows = db::query(&format!(
            "SELECT day, status, currency, COUNT(*) AS n, CAST(SUM(total) AS BIGINT) AS value FROM analytics_orders \
             WHERE {range} GROUP BY day, status, currency ORDER BY day, status, currency"
        ))
        .bind(&start)
        .bind(&end)
        .fetch_all(&mut *reader)
        .await?;
        let mut by_day = Vec::with_capacity(rows.len());
        let mut by_status = std::collections::BTreeMap::new();
        let mut orders = 0;
        for row in &rows {
            let day: String = row.try_get("day")?;
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            orders += n;
            *by_status.entry(status.clone()).or_insert(0) += n;
            by_day.push(DayStatus {
                date: day.parse().map_err(|_| Error::Corrupt("day".into()))?,
                status,
                currency: row.try_get("currency")?,
                orders: n,
                value: row.try_get("value")?,
            });
        }

        let rows = db::query(&format!(
            "SELECT o.currency, COUNT(*) AS n, CAST(SUM(o.total) AS BIGINT) AS gross, \
             CAST(SUM(COALESCE(r.refunded, 0)) AS BIGINT) AS refunded FROM analytics_orders o \
             LEFT JOIN (SELECT order_id, SUM(amount) AS refunded FROM analytics_refunds GROUP BY order_id) r \
             ON r.order_id = o.order_id \
             WHERE o.day >= $1 AND o.day <= $2 AND o.status IN {EARNING} GROUP BY o.currency ORDER BY o.currency"
        ))
        .bind(&start)
        .bind(&end)
        .fetch_all(&mut *reader)
        .await?;
        let revenue = rows
            .iter()
            .map(|row| {
                let (n, gross, refunded): (i64, i64, i64) = (
                    row.try_get("n")?,
                    row.try_get("gross")?,
                    row.try_get("refunded")?,
                );
                Ok(Revenue {
                    currency: row.try_get("currency")?,
                    amount: gross - refunded,
                    gross,
                    refunded,
                    orders: n,
                    average_order_value: (gross + n / 2) / n.max(1),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;

        let rows = db::query(&format!(
            "SELECT l.product_id, MIN(l.sku) AS sku, MIN(l.name) AS name, MIN(o.currency) AS currency, \
             CAST(SUM(l.quantity) AS BIGINT) AS quantity, CAST(SUM(l.line_total) AS BIGINT) AS revenue \
             FROM analytics_order_lines l JOIN analytics_orders o ON o.order_id = l.order_id \
             WHERE o.day >= $1 AND o.day <= $2 AND o.status IN {EARNING} \
             GROUP BY l.product_id ORDER BY quantity DESC, revenue DESC, l.product_id LIMIT 10"
        ))
        .bind(&start)
        .bind(&end)
        .fetch_all(&mut *reader)
        .await?;
        let top_products = rows
            .iter()
            .map(|row| {
                Ok(TopProduct {
                    product_id: row
                        .try_get::<String, _>("product_id")?
                        .parse()
                        .map_err(|_| Error::Corrupt("product id".into()))?,
                    sku: row.try_get("sku")?,
                    name: row.try_get("name")?,
                    quantity: row.try_get("quantity")?,
                    revenue: row.try_get("revenue")?,
                    currency: row.try_get("currency")?,
                })
            })
            .collect::<Result<_, Error>>()?;

        let rows = db::query(
            "SELECT p.outcome AS payment, COUNT(*) AS n FROM analytics_payments p \
             JOIN analytics_orders o ON o.order_id = p.order_id \
             WHERE o.day >= $1 AND o.day <= $2 GROUP BY p.outcome",
        )
        .bind(&start)
        .bind(&end)
        .fetch_all(&mut *reader)
        .await?;
        let (mut succeeded, mut failed) = (0, 0);
        for row in &rows {
            match row.try_get::<String, _>("payment")?.as_str() {
                "succeeded" => succeeded = row.try_get("n")?,
                "failed" => failed = row.try_get("n")?,
                _ => {}
            }
        }
        let charged = succeeded + failed;
        Ok(Summary {
            from,
            to,
            orders,
            by_status,
            revenue,
            by_day,
            top_products,
            payments: PaymentOutcomes {
                succeeded,
                failed,
                success_rate: (charged > 0).then(|| succeeded as f64 / charged as f64),
            },
        })
    }
}
