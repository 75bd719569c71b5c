//! Invoices: one per paid order, and a credit note for each refund of it.
//!
//! # Layout
//! - [`InvoiceHandler`]: the consumer (`invoice-service`) that issues documents.
//! - [`Document`]: what a document says (seller, customer, lines with their tax rates,
//!   the tax breakdown, totals, payment), kept as issued.
//! - [`pdf`]: renders a document as a PDF, A4, as many pages as its lines need.
//! - [`http`]: `GET /api/invoices/{orderId}`, `/credit-note` and
//!   `/credit-notes/{refundId}`, as `application/pdf`.
//! - [`build`]: the service on its database, the orders it reads, its `[invoices]`
//!   section ([`InvoiceConfig`]) and the tax rates.
//!
//! Numbers are gap-free per series and year (`INV-2026-000001`, `CN-2026-000001`), as
//! tax law in many countries asks: the counter moves in the same transaction that
//! stores the document and claims the event, so a failed or repeated attempt uses no
//! number, and a number is never used twice.
//!
//! The transaction stores the document's figures, not its PDF: rendering one (shaping
//! and subsetting an embedded font) takes milliseconds, which at a busy shop's rate of
//! payments would hold the database's writer for most of every second. The PDF is
//! rendered from the stored figures when asked for, by a renderer with no clock and
//! no randomness, so every download of a document is the same file. (Documents issued
//! before this kept the PDF rendered then, and are served as stored.)

pub mod http;
pub mod pdf;

use std::collections::{HashMap, HashSet};
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
use oxcart_platform::service::{About, Parts};
use oxcart_platform::tax::{Rate, TaxConfig};
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

/// Invoices on `db`, issued from the orders `orders` reads, by the seller of `config`
/// at the rates of `tax`: the document routes and the consumer that issues them.
pub fn build(
    db: Db,
    orders: Arc<dyn OrderSource>,
    config: &InvoiceConfig,
    tax: &TaxConfig,
) -> Parts {
    let settings = Settings::new(config, tax);
    Parts::routes(http::router(Invoices::new(db.clone())))
        .with_handler(Arc::new(InvoiceHandler::new(db, orders, settings)))
}

/// How many orders a batch fetches at once.
const ORDER_FETCHES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

    fn parse(text: &str) -> Result<Self, BoxError> {
        [Self::Invoice, Self::CreditNote]
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("unknown document kind {text}").into())
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Invoice => "INV",
            Self::CreditNote => "CN",
        }
    }
}

/// Who issues the documents: `[invoices]` in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvoiceConfig {
    pub seller: Seller,
}

impl Default for InvoiceConfig {
    fn default() -> Self {
        Self {
            seller: Seller {
                name: "oxcart demo shop".to_owned(),
                address: vec![
                    "1 Example Street".to_owned(),
                    "London N1 1AA".to_owned(),
                    "United Kingdom".to_owned(),
                ],
                vat_id: None,
                email: None,
            },
        }
    }
}

impl InvoiceConfig {
    /// A seller with a name, and no blank lines on the documents.
    pub fn validate(&self) -> Result<(), String> {
        let seller = &self.seller;
        if seller.name.trim().is_empty() {
            return Err("invoices.seller.name must not be empty".to_owned());
        }
        if seller.address.iter().any(|l| l.trim().is_empty()) {
            return Err("invoices.seller.address must not have empty lines".to_owned());
        }
        Ok(())
    }
}

/// The seller printed on every document, as tax law asks: name, address, tax id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Seller {
    pub name: String,
    /// One entry a printed line.
    pub address: Vec<String>,
    /// The seller's VAT or tax id.
    pub vat_id: Option<String>,
    /// Where a customer writes about a document.
    pub email: Option<String>,
}

/// What a document shows, kept as issued: the legal record. Its PDF is rendered from it
/// when asked ([`pdf::render`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub number: String,
    pub kind: Kind,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub currency: String,
    // The fields below are `default` for the documents issued before them (issue 20),
    // which kept their PDF as rendered then and are never rendered again.
    #[serde(default)]
    pub seller: Seller,
    pub bill_to: Vec<String>,
    #[serde(default)]
    pub customer_tax_id: Option<String>,
    pub lines: Vec<Line>,
    /// One row per tax rate: the sums the tax is computed on.
    #[serde(default)]
    pub taxes: Vec<TaxLine>,
    #[serde(default)]
    pub net: i64,
    #[serde(default)]
    pub tax: i64,
    /// Gross, tax included. Minor units; negative on a credit note.
    pub total: i64,
    #[serde(default)]
    pub payment: Option<Payment>,
    /// The invoice a credit note reverses.
    pub credits: Option<String>,
    /// Why a credit note was issued.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub description: String,
    pub sku: String,
    pub quantity: i64,
    /// Gross, tax included.
    pub unit_price: i64,
    #[serde(default)]
    pub tax_rate: Rate,
    /// Gross, tax included.
    pub line_total: i64,
}

/// The tax at one rate: on the sum of that rate's lines, once, as EU invoicing rules
/// ask, so that rounding does not drift with the number of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaxLine {
    pub rate: Rate,
    pub net: i64,
    pub tax: i64,
    pub gross: i64,
}

/// How the document was settled: an invoice paid by card, a credit note refunded to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// `Paid` or `Refunded`.
    pub status: String,
    pub method: String,
    /// The payment's or the refund's id.
    pub reference: String,
    /// When it was paid or refunded: no amount is due.
    pub date: DateTime<Utc>,
}

impl Document {
    fn kind_title(&self) -> &'static str {
        match self.kind {
            Kind::Invoice => "Invoice",
            Kind::CreditNote => "Credit note",
        }
    }

    /// The invoice of `order`, paid by `payment_id` at `at`, with each line's rate from
    /// `tax`. A line whose class has no rate (the class was removed from `[tax] rates`
    /// after the order) is an error: no invoice is better than a wrong one.
    fn invoice(
        order: &Order,
        number: String,
        at: DateTime<Utc>,
        payment_id: &str,
        settings: &Settings,
    ) -> Result<Self, BoxError> {
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
        let lines = order
            .items
            .iter()
            .map(|l| {
                let rate = settings.tax.rate(&l.tax_class).ok_or_else(|| {
                    format!(
                        "order {}: tax class {:?} has no rate in [tax] rates",
                        order.id, l.tax_class
                    )
                })?;
                Ok(Line {
                    description: l.name.clone(),
                    sku: l.sku.clone(),
                    quantity: i64::from(l.quantity),
                    unit_price: l.price,
                    tax_rate: rate,
                    line_total: l.line_total,
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Self::with_totals(Self {
            number,
            kind: Kind::Invoice,
            order_id: order.id,
            customer_id: order.customer_id,
            issued_at: at,
            currency: order.currency.clone(),
            seller: settings.seller.clone(),
            bill_to,
            customer_tax_id: order.customer_tax_id.clone(),
            lines,
            taxes: Vec::new(),
            net: 0,
            tax: 0,
            total: 0,
            payment: Some(Payment {
                status: "Paid".to_owned(),
                method: "Card".to_owned(),
                reference: payment_id.to_owned(),
                date: at,
            }),
            credits: None,
            reason: None,
        }))
    }

    /// The credit note of `refund` against `invoice`, in its layout and with its seller,
    /// customer and rates. A refund of the whole invoice reverses every line; a partial
    /// one is a line per rate, the amount shared among the rates as the invoice's gross
    /// is, so the tax given back is in the invoice's proportions.
    fn credit_note(invoice: &Self, number: String, at: DateTime<Utc>, refund: &Refund) -> Self {
        let lines = if refund.amount == invoice.total {
            invoice
                .lines
                .iter()
                .map(|l| Line {
                    unit_price: -l.unit_price,
                    line_total: -l.line_total,
                    ..l.clone()
                })
                .collect()
        } else {
            let shares = share(refund.amount, &invoice.taxes);
            let several = shares.len() > 1;
            shares
                .into_iter()
                .map(|(rate, amount)| Line {
                    description: if several {
                        format!("Refund: {} (goods at {rate})", refund.reason)
                    } else {
                        format!("Refund: {}", refund.reason)
                    },
                    sku: String::new(),
                    quantity: 1,
                    unit_price: -amount,
                    tax_rate: rate,
                    line_total: -amount,
                })
                .collect()
        };
        Self::with_totals(Self {
            number,
            kind: Kind::CreditNote,
            issued_at: at,
            lines,
            payment: Some(Payment {
                status: "Refunded".to_owned(),
                method: "Card".to_owned(),
                reference: refund.id.to_string(),
                date: at,
            }),
            credits: Some(invoice.number.clone()),
            reason: Some(refund.reason.clone()),
            ..invoice.clone()
        })
    }

    /// The document with its tax breakdown and totals computed from its lines.
    fn with_totals(mut self) -> Self {
        let mut by_rate: Vec<(Rate, i64)> = Vec::new();
        for line in &self.lines {
            match by_rate.iter_mut().find(|(r, _)| *r == line.tax_rate) {
                Some((_, gross)) => *gross += line.line_total,
                None => by_rate.push((line.tax_rate, line.line_total)),
            }
        }
        // Highest rate first, as invoices usually list them.
        by_rate.sort_by_key(|(rate, _)| std::cmp::Reverse(*rate));
        self.taxes = by_rate
            .into_iter()
            .map(|(rate, gross)| {
                let tax = rate.tax_in(gross);
                TaxLine {
                    rate,
                    net: gross - tax,
                    tax,
                    gross,
                }
            })
            .collect();
        self.net = self.taxes.iter().map(|t| t.net).sum();
        self.tax = self.taxes.iter().map(|t| t.tax).sum();
        self.total = self.taxes.iter().map(|t| t.gross).sum();
        self
    }
}

/// `amount` shared among `taxes` in proportion to their gross, each share rounded down
/// and what rounding leaves given to the largest: the shares sum to `amount` exactly.
fn share(amount: i64, taxes: &[TaxLine]) -> Vec<(Rate, i64)> {
    let total: i128 = taxes.iter().map(|t| i128::from(t.gross)).sum();
    if total <= 0 {
        return vec![(taxes.first().map_or_else(Rate::default, |t| t.rate), amount)];
    }
    let mut shares: Vec<(Rate, i64)> = taxes
        .iter()
        .map(|t| {
            let share = i128::from(amount) * i128::from(t.gross) / total;
            (t.rate, i64::try_from(share).unwrap_or(0))
        })
        .collect();
    let rest = amount - shares.iter().map(|(_, a)| a).sum::<i64>();
    if let Some(largest) = shares.iter_mut().max_by_key(|(_, a)| *a) {
        largest.1 += rest;
    }
    shares.retain(|(_, a)| *a != 0);
    shares
}

/// A refund, as `payment.refunded` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refund {
    id: Uuid,
    amount: i64,
    reason: String,
}

/// What the documents are made with: the seller and the tax rates.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub seller: Seller,
    pub tax: TaxConfig,
}

impl Settings {
    pub fn new(config: &InvoiceConfig, tax: &TaxConfig) -> Self {
        Self {
            seller: config.seller.clone(),
            tax: tax.clone(),
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
    settings: Arc<Settings>,
}

/// A document an event calls for.
#[derive(Debug, Clone)]
enum Wanted {
    /// An order was paid (by this payment).
    Invoice { order_id: Uuid, payment_id: String },
    /// A payment was refunded, in full or in part.
    CreditNote { order_id: Uuid, refund: Refund },
}

impl Wanted {
    fn order_id(&self) -> Uuid {
        match self {
            Self::Invoice { order_id, .. } | Self::CreditNote { order_id, .. } => *order_id,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Invoice { .. } => Kind::Invoice,
            Self::CreditNote { .. } => Kind::CreditNote,
        }
    }

    /// What tells an order's documents of a kind apart: nothing for its one invoice, the
    /// refund for each credit note.
    fn reference(&self) -> String {
        match self {
            Self::Invoice { .. } => String::new(),
            Self::CreditNote { refund, .. } => refund.id.to_string(),
        }
    }
}

impl InvoiceHandler {
    pub fn new(db: Db, orders: Arc<dyn OrderSource>, settings: Settings) -> Self {
        Self {
            db,
            orders,
            settings: Arc::new(settings),
        }
    }

    async fn order(&self, order_id: Uuid) -> Result<Order, BoxError> {
        self.orders
            .order(order_id)
            .await?
            .ok_or_else(|| format!("order {order_id} not found").into())
    }

    /// Issues the documents a batch of events calls for, in one transaction: each event
    /// claimed with its document, so each is issued once. The orders invoiced are read
    /// first, outside it, so the writer is not held while they are fetched (from another
    /// process, split apart); a credit note is made from its invoice, in the database.
    async fn issue_all(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let mut wanted = Vec::new();
        for &event in events {
            if let Some(document) = document_for(event)? {
                wanted.push((event, document));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // An event applied before needs no order fetched: a redelivery alone skips it all.
        if let [(event, _)] = wanted[..]
            && db::claimed(&self.db, GROUP, event.event.event_id).await?
        {
            return Ok(());
        }
        // A few at a time: split apart, each is a request to the orders service.
        let invoiced: Vec<Uuid> = wanted
            .iter()
            .filter(|(_, w)| w.kind() == Kind::Invoice)
            .map(|(_, w)| w.order_id())
            .collect();
        let orders: HashMap<Uuid, Order> = futures::stream::iter(invoiced)
            .map(|order_id| self.order(order_id))
            .buffered(ORDER_FETCHES)
            .map_ok(|order| (order.id, order))
            .try_collect()
            .await?;
        let mut tx = self.db.begin().await?;
        let fresh =
            db::claim_fresh(&mut tx, GROUP, wanted, |(cause, _)| cause.event.event_id).await?;
        let span = tracing::info_span!("issue invoices", documents = fresh.len());
        let issued = issue(&mut tx, &fresh, &orders, &self.settings)
            .instrument(span)
            .await?;
        tx.commit().await?;
        for (order_id, number) in issued {
            tracing::info!(order_id = %order_id, number = %number, "document issued");
        }
        Ok(())
    }
}

/// The document an event calls for, if any: an invoice for a paid order, a credit note
/// for each refund (a cancellation's or one an admin made, whole or partial).
fn document_for(event: &RecordedEvent) -> Result<Option<Wanted>, BoxError> {
    let data = &event.event.data;
    Ok(match event.event.event_type.as_str() {
        order::PAID => Some(Wanted::Invoice {
            order_id: event.event.aggregate_id,
            payment_id: data["paymentId"].as_str().unwrap_or_default().to_owned(),
        }),
        payment::REFUNDED => {
            let uuid = |field: &str| -> Result<Uuid, BoxError> {
                data[field]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| format!("payment.refunded without a valid {field}").into())
            };
            Some(Wanted::CreditNote {
                order_id: uuid("orderId")?,
                refund: Refund {
                    id: uuid("refundId")?,
                    amount: data["amount"]
                        .as_i64()
                        .ok_or("payment.refunded without an amount")?,
                    reason: data["reason"].as_str().unwrap_or("refund").to_owned(),
                },
            })
        }
        _ => None,
    })
}

/// Issues each wanted document on `tx`, in log order, unless its order has it already:
/// the numbers issued, by order. A few statements whatever the batch's size: the orders'
/// documents read at once, each series' numbers taken at once (gap-free, in log order,
/// as one at a time would take them), the documents inserted at once.
async fn issue(
    tx: &mut AnyConnection,
    batch: &[(&RecordedEvent, Wanted)],
    orders: &HashMap<Uuid, Order>,
    settings: &Settings,
) -> Result<Vec<(Uuid, String)>, BoxError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Every document the batch's orders have, by order, kind and reference; and their
    // invoices, which credit notes are made from. Then those issued here.
    let mut issued_before: HashSet<(Uuid, Kind, String)> = HashSet::new();
    let mut invoices: HashMap<Uuid, Document> = HashMap::new();
    let mut order_ids: Vec<String> = batch
        .iter()
        .map(|(_, w)| w.order_id().to_string())
        .collect();
    order_ids.sort_unstable();
    order_ids.dedup();
    for chunk in order_ids.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT order_id, kind, reference, document FROM invoices WHERE order_id IN ({})",
            db::params(chunk.len(), 1)
        );
        let mut select = db::query(&sql);
        for id in chunk {
            select = select.bind(id);
        }
        for row in select.fetch_all(&mut *tx).await? {
            let order_id: Uuid = row.try_get::<String, _>("order_id")?.parse()?;
            let kind = Kind::parse(&row.try_get::<String, _>("kind")?)?;
            if kind == Kind::Invoice {
                let document: String = row.try_get("document")?;
                invoices.insert(order_id, serde_json::from_str(&document)?);
            }
            issued_before.insert((order_id, kind, row.try_get("reference")?));
        }
    }

    // Which to issue, and how many numbers each series needs.
    let mut to_issue = Vec::new();
    let mut series: Vec<(String, i64)> = Vec::new();
    for (cause, wanted) in batch {
        if !issued_before.insert((wanted.order_id(), wanted.kind(), wanted.reference())) {
            continue;
        }
        let kind = wanted.kind();
        let name = format!("{}-{}", kind.prefix(), cause.event.timestamp.year());
        match series.iter_mut().find(|(s, _)| *s == name) {
            Some((_, count)) => *count += 1,
            None => series.push((name.clone(), 1)),
        }
        to_issue.push((cause, wanted, name));
    }
    let mut next: HashMap<String, i64> = HashMap::with_capacity(series.len());
    for (name, count) in series {
        let first = take_numbers(tx, &name, count).await?;
        next.insert(name, first);
    }

    let mut rows = Vec::with_capacity(to_issue.len());
    for (cause, wanted, name) in to_issue {
        let n = next.get_mut(&name).ok_or("a series without numbers")?;
        let number = format!("{name}-{n:06}");
        *n += 1;
        let at = cause.event.timestamp;
        // Each document's own work, in a span of its own.
        let span = tracing::info_span!(
            "issue invoice",
            order.id = %wanted.order_id(),
            invoice.kind = ?wanted.kind(),
            invoice.number = %number,
        );
        let _entered = span.enter();
        let document = match wanted {
            Wanted::Invoice {
                order_id,
                payment_id,
            } => {
                let order = orders
                    .get(order_id)
                    .ok_or_else(|| format!("order {order_id} was not fetched"))?;
                let invoice = Document::invoice(order, number, at, payment_id, settings)?;
                invoices.insert(*order_id, invoice.clone());
                invoice
            }
            Wanted::CreditNote { order_id, refund } => {
                let invoice = invoices
                    .get(order_id)
                    .ok_or_else(|| format!("order {order_id} has no invoice to credit yet"))?;
                Document::credit_note(invoice, number, at, refund)
            }
        };
        rows.push((wanted.reference(), document));
    }
    for chunk in rows.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO invoices (number, kind, order_id, reference, user_id, currency, total, issued_at, document) \
             VALUES {}",
            db::values(chunk.len(), 9, 1)
        );
        let mut insert = db::query(&sql);
        for (reference, document) in chunk {
            insert = insert
                .bind(&document.number)
                .bind(document.kind.as_str())
                .bind(document.order_id.to_string())
                .bind(reference)
                .bind(document.customer_id.to_string())
                .bind(&document.currency)
                .bind(document.total)
                .bind(db::timestamp(document.issued_at))
                .bind(serde_json::to_string(document)?);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(rows
        .into_iter()
        .map(|(_, document)| (document.order_id, document.number))
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
    #[error("the stored document cannot be read or rendered: {0}")]
    Corrupt(String),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::NotFound => ProblemKind::NotFound,
            Self::Storage(e) => ProblemKind::of_storage(e),
            Self::Corrupt(_) => ProblemKind::Internal,
        }
    }
}

/// A document's PDF.
pub struct Pdf {
    pub number: String,
    pub bytes: Vec<u8>,
}

/// Which of an order's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Invoice,
    /// The credit note issued last.
    LatestCreditNote,
    /// The credit note of this refund.
    CreditNote(Uuid),
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

    /// An order's document, to its owner or an admin.
    pub async fn pdf(&self, caller: &Caller, order_id: Uuid, which: Which) -> Result<Pdf, Error> {
        let (owner, pdf) = self
            .document(order_id, which)
            .await?
            .ok_or(Error::NotFound)?;
        if !caller.may_access(owner) {
            return Err(Error::NotFound);
        }
        Ok(pdf)
    }

    /// An order's document, with its owner, for whoever the caller has checked may have
    /// it (the confirmation e-mail to the order's customer); `None` before it is issued.
    pub async fn document(
        &self,
        order_id: Uuid,
        which: Which,
    ) -> Result<Option<(Uuid, Pdf)>, Error> {
        let (filter, reference) = match which {
            Which::Invoice => ("kind = 'invoice'", None),
            Which::LatestCreditNote => ("kind = 'credit_note'", None),
            Which::CreditNote(refund) => (
                "kind = 'credit_note' AND reference = $2",
                Some(refund.to_string()),
            ),
        };
        let sql = format!(
            "SELECT number, user_id, document, pdf FROM invoices WHERE order_id = $1 AND {filter} \
             ORDER BY number DESC LIMIT 1"
        );
        let mut query = db::query_as(&sql).bind(order_id.to_string());
        if let Some(reference) = reference {
            query = query.bind(reference);
        }
        let row: Option<(String, String, String, Option<Vec<u8>>)> =
            query.fetch_optional(&mut *self.db.read().await?).await?;
        let Some((number, owner, document, stored)) = row else {
            return Ok(None);
        };
        let owner = owner
            .parse()
            .map_err(|_| Error::Corrupt(format!("{number}: owner {owner}")))?;
        let bytes = match stored {
            Some(bytes) => bytes,
            None => {
                let document: Document = serde_json::from_str(&document)
                    .map_err(|e| Error::Corrupt(format!("{number}: {e}")))?;
                // Milliseconds of CPU: off the threads that serve requests.
                let span = tracing::info_span!("render pdf", invoice.number = %number);
                tokio::task::spawn_blocking(move || span.in_scope(|| pdf::render(&document)))
                    .await
                    .map_err(|e| Error::Corrupt(format!("{number}: {e}")))?
                    .map_err(|e| Error::Corrupt(format!("{number}: {e}")))?
            }
        };
        Ok(Some((owner, Pdf { number, bytes })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(percent: &str) -> Rate {
        Rate::parse_percent(percent).unwrap()
    }

    #[test]
    fn a_partial_refund_is_shared_among_the_rates_to_the_last_minor_unit() {
        let taxes =
            [(rate("23"), 12_300), (rate("8"), 5_400), (rate("0"), 1)].map(|(rate, gross)| {
                TaxLine {
                    rate,
                    net: 0,
                    tax: 0,
                    gross,
                }
            });
        for amount in [1, 999, 3_540, 17_700, 17_701] {
            let shares = share(amount, &taxes);
            assert_eq!(
                shares.iter().map(|(_, a)| a).sum::<i64>(),
                amount,
                "{shares:?}"
            );
        }
        assert_eq!(
            share(3_540, &taxes[..2]),
            vec![(rate("23"), 2_460), (rate("8"), 1_080)]
        );
    }

    #[test]
    fn an_invoice_issued_before_tax_lines_can_still_be_credited() {
        // A document as the first version stored it: no seller, rates or breakdown.
        let old = serde_json::json!({
            "number": "INV-2026-000001", "kind": "invoice", "orderId": Uuid::nil(),
            "customerId": Uuid::nil(), "issuedAt": "2026-11-01T10:00:00Z", "currency": "EUR",
            "billTo": ["Ada", "1 Road", "N1 London", "GB"],
            "lines": [{ "description": "Mug", "sku": "MUG", "quantity": 2, "unitPrice": 1450,
                        "lineTotal": 2900 }],
            "total": 2900, "credits": null,
        });
        let invoice: Document = serde_json::from_value(old).unwrap();
        let refund = Refund {
            id: Uuid::now_v7(),
            amount: 2900,
            reason: "order cancelled".into(),
        };
        let note = Document::credit_note(&invoice, "CN-2026-000001".into(), Utc::now(), &refund);
        assert_eq!(note.total, -2900);
        assert_eq!(note.lines[0].line_total, -2900);
        assert_eq!(note.credits.as_deref(), Some("INV-2026-000001"));
        assert!(!pdf::render(&note).unwrap().is_empty());
    }

    #[test]
    fn a_document_renders_to_the_same_bytes_every_time() {
        let invoice = Document::with_totals(Document {
            number: "INV-2026-000001".into(),
            kind: Kind::Invoice,
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            issued_at: Utc::now(),
            currency: "EUR".into(),
            seller: InvoiceConfig::default().seller,
            bill_to: vec!["Łukasz Żółć".into()],
            customer_tax_id: None,
            lines: vec![Line {
                description: "Mug".into(),
                sku: "MUG".into(),
                quantity: 1,
                unit_price: 1200,
                tax_rate: rate("20"),
                line_total: 1200,
            }],
            taxes: Vec::new(),
            net: 0,
            tax: 0,
            total: 0,
            payment: None,
            credits: None,
            reason: None,
        });
        assert_eq!((invoice.net, invoice.tax, invoice.total), (1000, 200, 1200));
        assert_eq!(
            pdf::render(&invoice).unwrap(),
            pdf::render(&invoice).unwrap()
        );
    }
}
