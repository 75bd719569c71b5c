//! Invoices: one per paid order, and a credit note when a paid order is refunded.
//!
//! # Layout
//! - [`InvoiceHandler`]: the consumer (`invoice-service`) that issues documents.
//! - [`pdf`]: renders a document as a PDF.
//! - [`http`]: `GET /api/invoices/{orderId}` and `/credit-note`, as `application/pdf`.
//!
//! Numbers are gap-free per series and year (`INV-2026-000001`, `CN-2026-000001`), as
//! tax law in many countries asks: the counter moves in the same transaction that
//! stores the document and claims the event, so a failed or repeated attempt uses no
//! number, and a number is never used twice.

pub mod http;
pub mod pdf;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_orders::OrderSource;
use oxcart_orders::domain::Order;
use oxcart_platform::auth::Caller;
use oxcart_platform::db::{self, Db};
use oxcart_platform::money::format_amount;
use oxcart_platform::{ProblemKind, ServiceError};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use uuid::Uuid;

pub const GROUP: &str = "invoice-service";

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

/// Takes the next number of `kind` for `year`, inside the caller's transaction.
async fn next_number(
    conn: &mut AnyConnection,
    kind: Kind,
    year: i32,
) -> Result<String, sqlx::Error> {
    let series = format!("{}-{year}", kind.prefix());
    let n: i64 = db::query_scalar(
        "INSERT INTO invoice_sequences (series, last) VALUES ($1, 1) \
         ON CONFLICT (series) DO UPDATE SET last = invoice_sequences.last + 1 RETURNING last",
    )
    .bind(&series)
    .fetch_one(conn)
    .await?;
    Ok(format!("{series}-{n:06}"))
}

pub struct InvoiceHandler {
    db: Db,
    orders: Arc<dyn OrderSource>,
}

impl InvoiceHandler {
    pub fn new(db: Db, orders: Arc<dyn OrderSource>) -> Self {
        Self { db, orders }
    }

    #[tracing::instrument(name = "issue invoice", skip_all, fields(order.id = %order_id, invoice.kind = ?kind))]
    async fn issue(
        &self,
        cause: &RecordedEvent,
        order_id: Uuid,
        kind: Kind,
    ) -> Result<(), BoxError> {
        if db::claimed(&self.db, GROUP, cause.event.event_id).await? {
            return Ok(());
        }
        let order = self
            .orders
            .order(order_id)
            .await?
            .ok_or_else(|| format!("order {order_id} not found"))?;
        let Some(mut tx) = db::begin_claimed(&self.db, GROUP, cause.event.event_id).await? else {
            return Ok(());
        };
        let existing: Option<String> =
            db::query_scalar("SELECT number FROM invoices WHERE order_id = $1 AND kind = $2")
                .bind(order_id.to_string())
                .bind(kind.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some() {
            tx.commit().await?;
            return Ok(());
        }
        let credits = match kind {
            Kind::Invoice => None,
            Kind::CreditNote => Some(
                db::query_scalar::<String>(
                    "SELECT number FROM invoices WHERE order_id = $1 AND kind = 'invoice'",
                )
                .bind(order_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| format!("order {order_id} has no invoice to credit yet"))?,
            ),
        };
        let at = cause.event.timestamp;
        let number = next_number(&mut tx, kind, at.year()).await?;
        let document = Document::for_order(&order, number, kind, at, credits);
        let pdf = pdf::render(&document);
        db::query(
            "INSERT INTO invoices (number, kind, order_id, user_id, currency, total, issued_at, document, pdf) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&document.number)
        .bind(kind.as_str())
        .bind(order_id.to_string())
        .bind(order.customer_id.to_string())
        .bind(&document.currency)
        .bind(document.total)
        .bind(db::timestamp(at))
        .bind(serde_json::to_string(&document)?)
        .bind(pdf)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(order_id = %order_id, number = %document.number, "document issued");
        Ok(())
    }
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
        match event.event.event_type.as_str() {
            "order.paid" => {
                self.issue(event, event.event.aggregate_id, Kind::Invoice)
                    .await
            }
            "payment.refunded" => {
                let order_id = event.event.data["orderId"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or("payment.refunded without an orderId")?;
                self.issue(event, order_id, Kind::CreditNote).await
            }
            _ => Ok(()),
        }
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
            Self::Storage(e) => db::problem_kind(e),
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
