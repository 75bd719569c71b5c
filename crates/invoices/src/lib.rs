//! Invoices: one per paid order, and a credit note when a paid order is refunded.
//!
//! # Layout
//! - [`InvoiceHandler`]: the consumer (`invoice-service`) that issues documents.
//! - [`pdf`]: renders a document as a PDF.
//! - [`http`]: `GET /api/invoices/{orderId}` and `/credit-note`, as `application/pdf`.
//! - [`build`]: the service on its database and the orders it reads.
//!
//! Numbers are gap-free per series and year (`INV-2026-000001`, `CN-2026-000001`), as
//! tax law in many countries asks: the counter moves in the same transaction that
//! stores the document and claims the event, so a failed or repeated attempt uses no
//! number, and a number is never used twice.

pub mod http;
pub mod pdf;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use oxcart_db::{self as db, Db};
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_events::types::{order, payment};
use oxcart_orders::OrderSource;
use oxcart_orders::domain::Order;
use oxcart_platform::auth::Caller;
use oxcart_platform::money::format_amount;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{ProblemKind, ServiceError};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};
use tracing::Instrument as _;
use uuid::Uuid;

pub const GROUP: &str = "invoice-service";

pub const ABOUT: About = About {
    name: "invoices",
    description: "Invoices and credit notes as PDF.",
    openapi: || http::routes().into_openapi(),
};

/// Invoices on `db`, issued from the orders `orders` reads: the document routes and the
/// consumer that issues them.
pub fn build(db: Db, orders: Arc<dyn OrderSource>) -> Parts {
    Parts::routes(http::router(Invoices::new(db.clone())))
        .with_handler(Arc::new(InvoiceHandler::new(db, orders)))
}

/// How many orders a batch fetches at once.
const ORDER_FETCHES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoice,
    CreditNote,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invoice => "invoice",
            Self::CreditNote => "credit_note",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Invoice => "INV",
            Self::CreditNote => "CN",
        }
    }
}

/// What a document shows, kept as issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub number: String,
    pub kind: Kind,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub currency: String,
    pub bill_to: Vec<String>,
    pub lines: Vec<Line>,
    /// Minor units; negative on a credit note.
    pub total: i64,
    /// The invoice a credit note reverses.
    pub credits: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub description: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

impl Document {
    fn kind_title(&self) -> &'static str {
        match self.kind {
            Kind::Invoice => "Invoice",
            Kind::CreditNote => "Credit note",
        }
    }

    fn money(&self, minor: i64) -> String {
        format_amount(&self.currency, minor)
    }

    fn for_order(
        order: &Order,
        number: String,
        kind: Kind,
        at: DateTime<Utc>,
        credits: Option<String>,
    ) -> Self {
        let sign = if kind == Kind::CreditNote { -1 } else { 1 };
        let a = &order.shipping_address;
        let bill_to = [
            Some(a.name.clone()),
            Some(a.line1.clone()),
            a.line2.clone(),
            Some(format!("{} {}", a.postal_code, a.city)),
            a.region.clone(),
            Some(a.country.clone()),
        ]
        .into_iter()
        .flatten()
        .collect();
        Self {
            number,
            kind,
            order_id: order.id,
            customer_id: order.customer_id,
            issued_at: at,
            currency: order.currency.clone(),
            bill_to,
            lines: order
                .items
                .iter()
                .map(|l| Line {
                    description: l.name.clone(),
                    sku: l.sku.clone(),
                    quantity: i64::from(l.quantity),
                    unit_price: sign * l.price,
                    line_total: sign * l.line_total,
                })
                .collect(),
            total: sign * order.total_amount,
            credits,
        }
    }
}

/// Takes the next `count` numbers of series `series` inside the caller's transaction,
/// and returns the first: one statement for a batch's documents of the series.
async fn take_numbers(
    conn: &mut AnyConnection,
    series: &str,
    count: i64,
) -> Result<i64, sqlx::Error> {
    let last: i64 = db::query_scalar(
        "INSERT INTO invoice_sequences (series, last) VALUES ($1, $2) \
         ON CONFLICT (series) DO UPDATE SET last = invoice_sequences.last + $2 RETURNING last",
    )
    .bind(series)
    .bind(count)
    .fetch_one(conn)
    .await?;
    Ok(last - count + 1)
}

pub struct InvoiceHandler {
    db: Db,
    orders: Arc<dyn OrderSource>,
}

impl InvoiceHandler {
    pub fn new(db: Db, orders: Arc<dyn OrderSource>) -> Self {
        Self { db, orders }
    }

    async fn order(&self, order_id: Uuid) -> Result<Order, BoxError> {
        self.orders
            .order(order_id)
            .await?
            .ok_or_else(|| format!("order {order_id} not found").into())
    }

    /// Issues the documents a batch of events calls for, in one transaction: each event
    /// claimed with its document, so each is issued once. The orders are read first,
    /// outside it, so the writer is not held while they are fetched (from another
    /// process, split apart).
    async fn issue_all(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let mut wanted = Vec::new();
        for &event in events {
            if let Some((order_id, kind)) = document_for(event)? {
                wanted.push((event, order_id, kind));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // An event applied before needs no order fetched: a redelivery alone skips it all.
        if let [(event, ..)] = wanted[..]
            && db::claimed(&self.db, GROUP, event.event.event_id).await?
        {
            return Ok(());
        }
        // A few at a time: split apart, each is a request to the orders service.
        let order_ids: Vec<Uuid> = wanted.iter().map(|(_, order_id, _)| *order_id).collect();
        let orders: Vec<Order> = futures::stream::iter(order_ids)
            .map(|order_id| self.order(order_id))
            .buffered(ORDER_FETCHES)
            .try_collect()
            .await?;
        let mut tx = self.db.begin().await?;
        let fetched: Vec<(&RecordedEvent, Kind, &Order)> = wanted
            .into_iter()
            .zip(&orders)
            .map(|((cause, _, kind), order)| (cause, kind, order))
            .collect();
        let fresh =
            db::claim_fresh(&mut tx, GROUP, fetched, |(cause, ..)| cause.event.event_id).await?;
        let span = tracing::info_span!("issue invoices", documents = fresh.len());
        let issued = issue(&mut tx, &fresh).instrument(span).await?;
        tx.commit().await?;
        for (order_id, number) in issued {
            tracing::info!(order_id = %order_id, number = %number, "document issued");
        }
        Ok(())
    }
}

/// The document an event calls for, if any: an invoice for a paid order, a credit note
/// for a refund.
fn document_for(event: &RecordedEvent) -> Result<Option<(Uuid, Kind)>, BoxError> {
    Ok(match event.event.event_type.as_str() {
        order::PAID => Some((event.event.aggregate_id, Kind::Invoice)),
        // A partial refund an admin made gets no credit note yet: this one reverses the
        // whole invoice, which is a cancellation's refund (issue 20, item 2).
        payment::REFUNDED if event.event.data["source"] == "request" => None,
        payment::REFUNDED => {
            let order_id = event.event.data["orderId"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .ok_or("payment.refunded without an orderId")?;
            Some((order_id, Kind::CreditNote))
        }
        _ => None,
    })
}

/// Issues each order's document of its kind on `tx`, in log order, unless the order has
/// one: the numbers issued, by order. A few statements whatever the batch's size: the
/// orders' documents read at once, each series' numbers taken at once (gap-free, in
/// log order, as one at a time would take them), the documents inserted at once.
async fn issue(
    tx: &mut AnyConnection,
    batch: &[(&RecordedEvent, Kind, &Order)],
) -> Result<Vec<(Uuid, String)>, BoxError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Every document the batch's orders have, by order and kind; then those issued here.
    let mut documents: HashMap<(Uuid, &'static str), Option<String>> = HashMap::new();
    let mut order_ids: Vec<String> = batch.iter().map(|(_, _, o)| o.id.to_string()).collect();
    order_ids.sort_unstable();
    order_ids.dedup();
    for chunk in order_ids.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT order_id, kind, number FROM invoices WHERE order_id IN ({})",
            db::params(chunk.len(), 1)
        );
        let mut select = db::query(&sql);
        for id in chunk {
            select = select.bind(id);
        }
        for row in select.fetch_all(&mut *tx).await? {
            let order_id: String = row.try_get("order_id")?;
            let kind: String = row.try_get("kind")?;
            let kind = [Kind::Invoice, Kind::CreditNote]
                .into_iter()
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| format!("unknown document kind {kind}"))?;
            documents.insert((order_id.parse()?, kind.as_str()), row.try_get("number")?);
        }
    }

    // Which to issue, and how many numbers each series needs.
    let mut to_issue = Vec::new();
    let mut series: Vec<(String, i64)> = Vec::new();
    for &(cause, kind, order) in batch {
        if documents.contains_key(&(order.id, kind.as_str())) {
            continue;
        }
        documents.insert((order.id, kind.as_str()), None);
        let name = format!("{}-{}", kind.prefix(), cause.event.timestamp.year());
        match series.iter_mut().find(|(s, _)| *s == name) {
            Some((_, count)) => *count += 1,
            None => series.push((name.clone(), 1)),
        }
        to_issue.push((cause, kind, order, name));
    }
    let mut next: HashMap<String, i64> = HashMap::with_capacity(series.len());
    for (name, count) in series {
        let first = take_numbers(tx, &name, count).await?;
        next.insert(name, first);
    }

    let mut rows = Vec::with_capacity(to_issue.len());
    for (cause, kind, order, name) in to_issue {
        let n = next.get_mut(&name).ok_or("a series without numbers")?;
        let number = format!("{name}-{n:06}");
        *n += 1;
        documents.insert((order.id, kind.as_str()), Some(number.clone()));
        let credits = match kind {
            Kind::Invoice => None,
            Kind::CreditNote => Some(
                documents
                    .get(&(order.id, Kind::Invoice.as_str()))
                    .cloned()
                    .flatten()
                    .ok_or_else(|| format!("order {} has no invoice to credit yet", order.id))?,
            ),
        };
        // The document's own work, its rendering, in a span of its own.
        let span = tracing::info_span!("issue invoice", order.id = %order.id, invoice.kind = ?kind);
        let _entered = span.enter();
        let at = cause.event.timestamp;
        let document = Document::for_order(order, number, kind, at, credits);
        let pdf = pdf::render(&document);
        rows.push((order, kind, at, document, pdf));
    }
    for chunk in rows.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO invoices (number, kind, order_id, user_id, currency, total, issued_at, document, pdf) \
             VALUES {}",
            db::values(chunk.len(), 9, 1)
        );
        let mut insert = db::query(&sql);
        for (order, kind, at, document, pdf) in chunk {
            insert = insert
                .bind(&document.number)
                .bind(kind.as_str())
                .bind(order.id.to_string())
                .bind(order.customer_id.to_string())
                .bind(&document.currency)
                .bind(document.total)
                .bind(db::timestamp(*at))
                .bind(serde_json::to_string(document)?)
                .bind(pdf.clone());
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(rows
        .into_iter()
        .map(|(order, _, _, document, _)| (order.id, document.number))
        .collect())
}

#[async_trait]
impl Handler for InvoiceHandler {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS, topics::PAYMENTS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.issue_all(&[event]).await
    }

    /// A batch's documents are one transaction; should one fail (a refund before its
    /// invoice), none is issued and the runner goes one event at a time.
    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        self.issue_all(events).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such document")]
    NotFound,
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::NotFound => ProblemKind::NotFound,
            Self::Storage(e) => ProblemKind::of_storage(e),
        }
    }
}

/// A stored document's PDF.
pub struct Pdf {
    pub number: String,
    pub bytes: Vec<u8>,
}

/// The invoices service's queries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Invoices {
    db: Db,
}

impl Invoices {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// An order's invoice or credit note, to its owner or an admin.
    pub async fn pdf(&self, caller: &Caller, order_id: Uuid, kind: Kind) -> Result<Pdf, Error> {
        let row: Option<(String, String, Vec<u8>)> = db::query_as(
            "SELECT number, user_id, pdf FROM invoices WHERE order_id = $1 AND kind = $2",
        )
        .bind(order_id.to_string())
        .bind(kind.as_str())
        .fetch_optional(&mut *self.db.read().await?)
        .await?;
        let (number, owner, bytes) = row.ok_or(Error::NotFound)?;
        if !owner.parse().is_ok_and(|owner| caller.may_access(owner)) {
            return Err(Error::NotFound);
        }
        Ok(Pdf { number, bytes })
    }
}
