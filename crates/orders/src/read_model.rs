//! The query side (CQRS): `order_read_model` and `order_item_read_model`, fed by the
//! projection from the event store and read by the query endpoints.
//!
//! The projection is a pure function of the events (every value it writes, timestamps
//! included, comes from an event), which is what lets `oxcart projections rebuild`
//! reproduce the live tables row for row.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use oxcart_db::{self as db, Db};
use oxcart_events::projection::Projection;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, Position, RecordedEvent};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::Error;
use crate::domain::{AGGREGATE, Order, OrderEvent, OrderLine, OrderStatus};

/// The checkpoint name of the order projection.
pub const PROJECTION: &str = "order-projection";

/// Which orders a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
}

/// Where an order page ends: newest first, by creation time then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    #[serde(rename = "t")]
    pub created_at: String,
    #[serde(rename = "i")]
    pub id: Uuid,
}

const COLUMNS: &str = "order_id, user_id, status, status_reason, currency, total_amount, shipping_address, customer_tax_id, version, created_at, updated_at";

/// The query side's port: where reads find orders as the projection left them. On SQL
/// it is [`OrderReadModel`]; the serverless mode keeps them in a DynamoDB table.
#[async_trait]
pub trait OrderViews: Send + Sync + 'static {
    /// An order as a replica (if any) has it: possibly a little behind.
    async fn get(&self, id: Uuid) -> Result<Option<Order>, Error>;

    /// An order as the primary has it, for a reader that a replica has not caught up with.
    async fn get_latest(&self, id: Uuid) -> Result<Option<Order>, Error>;

    /// Orders newest first (by creation time, then id), after `after`.
    async fn list(
        &self,
        filter: &Filter,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<Order>, Error>;
}

#[derive(Debug, Clone)]
pub struct OrderReadModel {
    db: Db,
}

impl OrderReadModel {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The oldest orders placed before `before` that still await their payment, at
    /// most `limit` of them (an index on status and time finds them).
    pub async fn awaiting_payment(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, Error> {
        let rows = db::query(
            "SELECT order_id FROM order_read_model WHERE status = $1 AND created_at < $2 \
             ORDER BY created_at LIMIT $3",
        )
        .bind(OrderStatus::Created.as_str())
        .bind(db::timestamp(before))
        .bind(limit)
        .fetch_all(&mut *self.db.read().await?)
        .await?;
        rows.iter().map(|row| parse(row, "order_id")).collect()
    }

    /// The order and its lines in one statement, a row per line: on SQLite each
    /// statement is a round trip to the connection's thread, and on PostgreSQL one to the
    /// server, so `GET /api/orders/{id}` makes one rather than two.
    async fn get_on(conn: &mut AnyConnection, id: Uuid) -> Result<Option<Order>, Error> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let order: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect();
            format!(
                "SELECT {}, {LINE_COLUMNS} FROM order_read_model o \
                 LEFT JOIN order_item_read_model i ON i.order_id = o.order_id \
                 WHERE o.order_id = $1 ORDER BY i.line_no",
                order.join(", ")
            )
        });
        let rows = db::query(&SQL)
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut order = decode_order(first)?;
        for row in &rows {
            // An order without lines (none is placed so) still reads, as one row of NULLs.
            if row.try_get::<Option<String>, _>("sku")?.is_some() {
                order.items.push(decode_line(row)?);
            }
        }
        Ok(Some(order))
    }
}

#[async_trait]
impl OrderViews for OrderReadModel {
    async fn get(&self, id: Uuid) -> Result<Option<Order>, Error> {
        Self::get_on(&mut *self.db.read().await?, id).await
    }

    async fn get_latest(&self, id: Uuid) -> Result<Option<Order>, Error> {
        Self::get_on(&mut *self.db.read_primary().await?, id).await
    }

    async fn list(
        &self,
        filter: &Filter,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<Order>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM order_read_model \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) \
               AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND order_id < $4)) \
             ORDER BY created_at DESC, order_id DESC LIMIT $5"
        );
        let mut conn = self.db.read().await?;
        let rows = db::query(&sql)
            .bind(filter.customer_id.map(|id| id.to_string()))
            .bind(filter.status.map(OrderStatus::as_str))
            .bind(after.map(|a| a.created_at.clone()))
            .bind(after.map(|a| a.id.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        with_items(&mut conn, rows).await
    }
}

/// Decodes order rows and attaches their lines with one more query on the same
/// connection (and so, on PostgreSQL, in the same snapshot).
async fn with_items(conn: &mut AnyConnection, rows: Vec<AnyRow>) -> Result<Vec<Order>, Error> {
    let mut views = rows
        .iter()
        .map(decode_order)
        .collect::<Result<Vec<_>, _>>()?;
    if views.is_empty() {
        return Ok(views);
    }
    let placeholders: Vec<String> = (1..=views.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT order_id, product_id, sku, name, unit_price, quantity, line_total, tax_class FROM order_item_read_model \
             WHERE order_id IN ({}) ORDER BY order_id, line_no",
        placeholders.join(", ")
    );
    let mut query = db::query(&sql);
    for view in &views {
        query = query.bind(view.id.to_string());
    }
    for row in query.fetch_all(conn).await? {
        let order_id: Uuid = parse(&row, "order_id")?;
        let line = decode_line(&row)?;
        if let Some(view) = views.iter_mut().find(|v| v.id == order_id) {
            view.items.push(line);
        }
    }
    Ok(views)
}

/// The line columns [`decode_line`] reads, as the join in `get_on` names them.
const LINE_COLUMNS: &str =
    "i.product_id, i.sku, i.name, i.unit_price, i.quantity, i.line_total, i.tax_class";

fn decode_line(row: &AnyRow) -> Result<OrderLine, Error> {
    Ok(OrderLine {
        product_id: parse(row, "product_id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        price: row.try_get("unit_price")?,
        quantity: u32::try_from(row.try_get::<i64, _>("quantity")?)
            .map_err(|_| corrupt("quantity"))?,
        line_total: row.try_get("line_total")?,
        tax_class: row.try_get("tax_class")?,
    })
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("order read model {what}"))
}

fn parse(row: &AnyRow, column: &str) -> Result<Uuid, Error> {
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|_| corrupt(column))
}

fn decode_order(row: &AnyRow) -> Result<Order, Error> {
    let status: String = row.try_get("status")?;
    let address: String = row.try_get("shipping_address")?;
    let timestamp = |column: &str| -> Result<DateTime<Utc>, Error> {
        db::parse_timestamp(&row.try_get::<String, _>(column)?).map_err(|_| corrupt(column))
    };
    Ok(Order {
        id: parse(row, "order_id")?,
        customer_id: parse(row, "user_id")?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        status_reason: row.try_get("status_reason")?,
        items: Vec::new(),
        currency: row.try_get("currency")?,
        total_amount: row.try_get("total_amount")?,
        shipping_address: serde_json::from_str(&address)
            .map_err(|_| corrupt("shipping_address"))?,
        customer_tax_id: row.try_get("customer_tax_id")?,
        // The aggregate's bookkeeping; the read side does not show it.
        refunds: Vec::new(),
        version: u64::try_from(row.try_get::<i64, _>("version")?)
            .map_err(|_| corrupt("version"))?,
        created_at: timestamp("created_at")?,
        updated_at: timestamp("updated_at")?,
    })
}

/// Feeds the read model from the event store.
#[derive(Debug, Clone)]
pub struct OrderProjection {
    db: Db,
}

impl OrderProjection {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Projection for OrderProjection {
    fn name(&self) -> &'static str {
        PROJECTION
    }

    async fn checkpoint(&self) -> Result<Position, BoxError> {
        let mut conn = self.db.read_primary().await?;
        Ok(db::checkpoint(&mut conn, PROJECTION).await?)
    }

    async fn apply(&self, after: Position, events: &[RecordedEvent]) -> Result<Position, BoxError> {
        let mut tx = self.db.begin().await?;
        let current = db::checkpoint(&mut tx, PROJECTION).await?;
        if current != after {
            // Someone else (a rebuild, another instance) moved on; re-read from there.
            return Ok(current);
        }
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(current);
        };
        apply_in(&mut tx, events).await?;
        db::save_checkpoint(&mut tx, PROJECTION, last).await?;
        tx.commit().await?;
        Ok(last)
    }
}

/// Writes what `events` change in the read model, inside the caller's transaction, in
/// a few multi-row statements whatever the number of events: the new orders, their
/// lines, then each order's latest status. An order's status events each rewrite the
/// whole status, so only its last one in the batch needs writing, and it is written
/// after the order's row, which its creation (always an order's first event) inserted.
async fn apply_in(conn: &mut AnyConnection, events: &[RecordedEvent]) -> Result<(), BoxError> {
    struct Status {
        /// `None`: the event left the status as it was (a refund request).
        status: Option<OrderStatus>,
        reason: Option<String>,
        version: i64,
        at: String,
    }
    let mut placed = Vec::new();
    // By order, in the order each was first changed (an insert keeps the order's place
    // and takes the newer status): the same batch, the same statements.
    let mut statuses: IndexMap<String, Status> = IndexMap::new();
    for recorded in events
        .iter()
        .filter(|e| e.event.aggregate_type == AGGREGATE)
    {
        let Some(event) = OrderEvent::decode(&recorded.event.event_type, &recorded.event.data)?
        else {
            continue;
        };
        let id = recorded.event.aggregate_id.to_string();
        let at = db::timestamp(recorded.event.timestamp);
        let version = i64::try_from(recorded.version)?;
        if let OrderEvent::Created(created) = event {
            placed.push((id, created, version, at));
            continue;
        }
        let mut status = Status {
            status: event.status(),
            reason: event.reason().map(str::to_owned),
            version,
            at,
        };
        if status.status.is_none()
            && let Some(before) = statuses.get(&id)
        {
            // An earlier event of this batch set the status: it stands.
            status.status = before.status;
            status.reason.clone_from(&before.reason);
        }
        statuses.insert(id, status);
    }

    for chunk in placed.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO order_read_model (order_id, user_id, status, status_reason, currency, total_amount, \
             shipping_address, customer_tax_id, version, created_at, updated_at) VALUES {}",
            db::values(chunk.len(), 11, 1)
        );
        let mut insert = db::query(&sql);
        for (id, created, version, at) in chunk {
            insert = insert
                .bind(id)
                .bind(created.customer_id.to_string())
                .bind(OrderStatus::Created.as_str())
                .bind(None::<String>)
                .bind(&created.currency)
                .bind(created.total_amount)
                .bind(serde_json::to_string(&created.shipping_address)?)
                .bind(&created.customer_tax_id)
                .bind(*version)
                .bind(at)
                .bind(at);
        }
        insert.execute(&mut *conn).await?;
    }
    let lines: Vec<(&String, usize, &OrderLine)> = placed
        .iter()
        .flat_map(|(id, created, ..)| {
            created
                .items
                .iter()
                .enumerate()
                .map(move |(n, l)| (id, n, l))
        })
        .collect();
    for chunk in lines.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO order_item_read_model (order_id, line_no, product_id, sku, name, unit_price, quantity, \
             line_total, tax_class) VALUES {}",
            db::values(chunk.len(), 9, 1)
        );
        let mut insert = db::query(&sql);
        for (id, line_no, line) in chunk {
            insert = insert
                .bind(*id)
                .bind(i64::try_from(*line_no)?)
                .bind(line.product_id.to_string())
                .bind(&line.sku)
                .bind(&line.name)
                .bind(line.price)
                .bind(i64::from(line.quantity))
                .bind(line.line_total)
                .bind(&line.tax_class);
        }
        insert.execute(&mut *conn).await?;
    }
    let statuses: Vec<_> = statuses.into_iter().collect();
    for chunk in statuses.chunks(db::ROWS_PER_STATEMENT) {
        // `UPDATE … FROM` a list of values, which both engines read the same way.
        let sql = format!(
            "WITH changed (order_id, status, status_reason, version, updated_at) AS (VALUES {}) \
             UPDATE order_read_model SET status = COALESCE(changed.status, order_read_model.status), \
             status_reason = CASE WHEN changed.status IS NULL THEN order_read_model.status_reason \
             ELSE changed.status_reason END, \
             version = changed.version, updated_at = changed.updated_at \
             FROM changed WHERE order_read_model.order_id = changed.order_id",
            db::values(chunk.len(), 5, 1)
        );
        let mut update = db::query(&sql);
        for (id, status) in chunk {
            update = update
                .bind(id)
                .bind(status.status.map(OrderStatus::as_str))
                .bind(&status.reason)
                .bind(status.version)
                .bind(&status.at);
        }
        update.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub orders: u64,
    pub position: Position,
}

/// Replays the whole store into empty read-model tables, in one transaction: readers see
/// the old tables until it commits, then the new ones. It holds the write lock for its
/// duration, so run it when writes can wait.
pub async fn rebuild(db: &Db, store: &dyn EventStore) -> Result<Rebuilt, BoxError> {
    let mut tx = db.begin().await?;
    db::query("DELETE FROM order_item_read_model")
        .execute(&mut *tx)
        .await?;
    db::query("DELETE FROM order_read_model")
        .execute(&mut *tx)
        .await?;
    let mut rebuilt = Rebuilt {
        events: 0,
        orders: 0,
        position: 0,
    };
    loop {
        let events = store.read_all(rebuilt.position, 1000).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        apply_in(&mut tx, &events).await?;
        rebuilt.events += events.len() as u64;
        rebuilt.position = last;
    }
    db::save_checkpoint(&mut tx, PROJECTION, rebuilt.position).await?;
    let orders: i64 = db::query_scalar("SELECT COUNT(*) FROM order_read_model")
        .fetch_one(&mut *tx)
        .await?;
    rebuilt.orders = u64::try_from(orders)?;
    tx.commit().await?;
    Ok(rebuilt)
}
