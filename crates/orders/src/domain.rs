//! The order aggregate: commands, events and state, with no I/O.
//!
//! An order is its events. [`Order::from_history`] folds a stream into the current state;
//! each decision ([`place`], [`Order::decide`]) looks at that state and either produces
//! the next event or refuses. Both directions go through one function,
//! [`OrderStatus::after`], so the state machine is written down exactly once:
//!
//! ```text
//! CREATED ──paid──▶ PAID ──shipped──▶ SHIPPED ──delivered──▶ DELIVERED
//!    │  └─payment failed──▶ PAYMENT_FAILED
//!    └──────cancelled─────▶ CANCELLED ◀──cancelled (refund due)── PAID
//! ```
//!
//! A refund requested of a PAID, SHIPPED or DELIVERED order (`order.refund_requested`)
//! leaves its status as it is: the order keeps the sum requested, so that no refund
//! takes back more than the order was paid.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use oxcart_events::RecordedEvent;
use oxcart_events::types::order;
use oxcart_platform::{FieldError, Validator};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

pub const AGGREGATE: &str = "order";
pub const MAX_QUANTITY: u32 = 1000;
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Created,
    Paid,
    PaymentFailed,
    Cancelled,
    Shipped,
    Delivered,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        Self::Created,
        Self::Paid,
        Self::PaymentFailed,
        Self::Cancelled,
        Self::Shipped,
        Self::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Paid => "PAID",
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state machine: the status an order moves to when `event` happens to it in this
    /// status, or `None` when the event is not allowed here.
    pub fn after(self, event: &OrderEvent) -> Option<Self> {
        use OrderEvent as E;
        use OrderStatus as S;
        let allowed = matches!(
            (self, event),
            (
                S::Created,
                E::Paid(_) | E::PaymentFailed(_) | E::Cancelled(_)
            ) | (S::Paid, E::Cancelled(_) | E::Shipped(_))
                | (S::Shipped, E::Delivered(_))
                | (S::Paid | S::Shipped | S::Delivered, E::RefundRequested(_))
        );
        allowed.then(|| event.status().unwrap_or(self))
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order, priced from the catalog when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// Unit price in minor units, as the catalog had it.
    pub price: i64,
    pub quantity: u32,
    /// `price × quantity`.
    pub line_total: i64,
    /// The product's tax class when the order was placed (its rate is configuration's,
    /// `[tax] rates`); prices include its tax. (Views stored before tax classes, such
    /// as the serverless variant's, have none: `standard`.)
    #[serde(default = "standard_class")]
    #[schema(example = "standard")]
    pub tax_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShippingAddress {
    #[schema(
        example = "Ada Lovelace",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(
        example = "12 St James's Square",
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub line2: Option<String>,
    #[schema(
        example = "London",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub region: Option<String>,
    #[schema(
        example = "SW1Y 4JH",
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(
        example = "GB",
        pattern = "^[A-Za-z]{2}$",
        min_length = 2,
        max_length = 2
    )]
    pub country: String,
}

impl ShippingAddress {
    /// Trims every field, upper-cases the country and checks lengths.
    pub fn parse(self, v: &mut Validator) -> Option<Self> {
        fn text(
            v: &mut Validator,
            field: &str,
            value: &str,
            max: usize,
            required: bool,
        ) -> Option<String> {
            let value = value.trim();
            let result = if required && value.is_empty() {
                Err("must not be empty".to_owned())
            } else if value.chars().count() > max {
                Err(format!("must be at most {max} characters"))
            } else if value.chars().any(char::is_control) {
                Err("must not contain control characters".to_owned())
            } else {
                Ok(value.to_owned())
            };
            v.check(&["shippingAddress", field], result)
        }
        // `Some(None)`: absent or blank; `None`: invalid (and recorded).
        let optional =
            |v: &mut Validator, field: &str, value: Option<String>, max: usize| match value {
                None => Some(None),
                Some(value) => {
                    text(v, field, &value, max, false).map(|s| (!s.is_empty()).then_some(s))
                }
            };
        let name = text(v, "name", &self.name, 100, true);
        let line1 = text(v, "line1", &self.line1, 200, true);
        let line2 = optional(v, "line2", self.line2, 200);
        let city = text(v, "city", &self.city, 100, true);
        let region = optional(v, "region", self.region, 100);
        let postal_code = text(v, "postalCode", &self.postal_code, 20, true);
        let country = self.country.trim().to_ascii_uppercase();
        let country = v.check(
            &["shippingAddress", "country"],
            if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(country)
            } else {
                Err("must be an ISO 3166-1 alpha-2 code such as GB".to_owned())
            },
        );
        Some(Self {
            name: name?,
            line1: line1?,
            line2: line2?,
            city: city?,
            region: region?,
            postal_code: postal_code?,
            country: country?,
        })
    }
}

/// A request to place an order, validated: 1 to 100 lines, each product once, each
/// quantity 1 to 1000, and a complete address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub items: Vec<(Uuid, u32)>,
    pub shipping_address: ShippingAddress,
    pub payment_token: String,
    pub customer_tax_id: Option<String>,
}

/// Longest customer tax id accepted (VAT numbers are at most 14 characters; other
/// countries' ids are longer).
pub const MAX_TAX_ID_CHARS: usize = 32;

/// A customer's tax id (a VAT number such as `PL5261040828`), for the invoice: trimmed,
/// upper-cased, letters, digits, spaces and `-./` only; blank is none.
pub fn parse_tax_id(raw: &str) -> Result<Option<String>, String> {
    let id = raw.trim().to_uppercase();
    if id.is_empty() {
        return Ok(None);
    }
    if id.chars().count() > MAX_TAX_ID_CHARS
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '.' | '/'))
    {
        return Err(format!(
            "must be at most {MAX_TAX_ID_CHARS} letters, digits, spaces or -./"
        ));
    }
    Ok(Some(id))
}

impl PlaceOrder {
    pub fn parse(
        items: Vec<(Uuid, i64)>,
        address: ShippingAddress,
        token: String,
        customer_tax_id: Option<String>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut v = Validator::default();
        let customer_tax_id = match customer_tax_id {
            None => Some(None),
            Some(raw) => v.check(&["customerTaxId"], parse_tax_id(&raw)),
        };
        let token = v.check(
            &["paymentToken"],
            if (1..=64).contains(&token.len())
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                Ok(token)
            } else {
                Err("must be 1 to 64 letters, digits or underscores".to_owned())
            },
        );
        if items.is_empty() {
            v.push(FieldError::body(
                &["items"],
                "must contain at least one item",
            ));
        }
        if items.len() > MAX_LINES {
            v.push(FieldError::body(
                &["items"],
                format!("must contain at most {MAX_LINES} items"),
            ));
        }
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(items.len());
        for (index, (product_id, quantity)) in items.into_iter().enumerate() {
            let at = |field: &str| ["items".to_owned(), index.to_string(), field.to_owned()];
            if !seen.insert(product_id) {
                v.push(FieldError::body(
                    &at("productId"),
                    "appears more than once; combine the quantities",
                ));
            }
            let quantity = v.check(
                &at("quantity"),
                u32::try_from(quantity)
                    .ok()
                    .filter(|q| (1..=MAX_QUANTITY).contains(q))
                    .ok_or_else(|| format!("must be between 1 and {MAX_QUANTITY}")),
            );
            lines.push(quantity.map(|q| (product_id, q)));
        }
        let address = address.parse(&mut v);
        v.finish(|| {
            Some(Self {
                items: lines.into_iter().collect::<Option<_>>()?,
                shipping_address: address?,
                payment_token: token?,
                customer_tax_id: customer_tax_id?,
            })
        })
    }

    pub fn product_ids(&self) -> Vec<Uuid> {
        self.items.iter().map(|(id, _)| *id).collect()
    }

    /// A digest of the request, to tell a retry (same digest) from a different request
    /// reusing an `Idempotency-Key`.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What the catalog says about a product when an order is placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    /// Snapshots cached before tax classes have none: `standard`.
    #[serde(default = "standard_class")]
    pub tax_class: String,
}

pub(crate) fn standard_class() -> String {
    oxcart_platform::tax::DEFAULT_CLASS.to_owned()
}

/// Prices an order from the catalog's snapshots: every product must exist and all must
/// share one currency. The total is computed here, never taken from the client.
pub fn place(
    customer_id: Uuid,
    command: &PlaceOrder,
    catalog: &[ProductSnapshot],
) -> Result<OrderCreated, Vec<FieldError>> {
    let by_id: HashMap<Uuid, &ProductSnapshot> = catalog.iter().map(|p| (p.id, p)).collect();
    let mut v = Validator::default();
    let mut currency: Option<&str> = None;
    let mut items = Vec::with_capacity(command.items.len());
    let mut total: Option<i64> = Some(0);
    for (index, &(product_id, quantity)) in command.items.iter().enumerate() {
        let at = |field: &str| ["items".to_owned(), index.to_string(), field.to_owned()];
        let Some(product) = by_id.get(&product_id) else {
            v.push(FieldError::body(&at("productId"), "no such product"));
            continue;
        };
        match currency {
            None => currency = Some(&product.currency),
            Some(c) if c != product.currency => {
                v.push(FieldError::body(
                    &at("productId"),
                    format!(
                        "is priced in {}, but the order is in {c}; an order has one currency",
                        product.currency
                    ),
                ));
            }
            Some(_) => {}
        }
        let line_total = product.price.checked_mul(i64::from(quantity));
        total = total.zip(line_total).and_then(|(t, l)| t.checked_add(l));
        items.push(OrderLine {
            product_id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            price: product.price,
            quantity,
            line_total: line_total.unwrap_or(i64::MAX),
            tax_class: product.tax_class.clone(),
        });
    }
    if total.is_none() {
        v.push(FieldError::body(&["items"], "the order total is too large"));
    }
    v.finish(|| {
        Some(OrderCreated {
            customer_id,
            items,
            currency: currency?.to_owned(),
            total_amount: total?,
            shipping_address: command.shipping_address.clone(),
            payment_token: Some(command.payment_token.clone()),
            customer_tax_id: command.customer_tax_id.clone(),
        })
    })
}

/// Everything that can happen to an order. The `data` of each event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// Boxed: it carries the lines and the address, and dwarfs the other variants.
    Created(Box<OrderCreated>),
    Paid(OrderPaid),
    PaymentFailed(OrderPaymentFailed),
    Cancelled(OrderCancelled),
    Shipped(OrderShipped),
    Delivered(OrderDelivered),
    RefundRequested(OrderRefundRequested),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub customer_id: Uuid,
    pub items: Vec<OrderLine>,
    pub currency: String,
    pub total_amount: i64,
    pub shipping_address: ShippingAddress,
    /// What payments charges: a provider's token for the customer's card, never the
    /// card itself. Absent on orders placed before payments existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_token: Option<String>,
    /// The customer's tax id, shown on the invoice, when given. (Version 2 of
    /// `order.created`, which also gave each line its `taxClass`.)
    #[serde(default)]
    pub customer_tax_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub payment_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentFailed {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub cancelled_by: Uuid,
    /// The order had been paid, so the payment must be refunded.
    pub refund_due: bool,
    /// What refunds asked for before gave back already: the cancellation refunds the
    /// rest. (Version 2 of `order.cancelled`; 0 in the first, which had no such refunds.)
    #[serde(default)]
    pub refunded_before: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    pub shipped_by: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDelivered {
    pub delivered_by: Uuid,
}

/// An admin's request to give back `amount` of a paid order, which payments carries out
/// under `refund_id` (its idempotency key with the provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRefundRequested {
    pub refund_id: Uuid,
    /// Minor units, in the order's currency.
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    pub requested_by: Uuid,
}

#[derive(Debug, thiserror::Error)]
#[error("event {event_type} cannot be decoded: {source}")]
pub struct DecodeError {
    pub event_type: String,
    #[source]
    pub source: serde_json::Error,
}

impl OrderEvent {
    /// The status an order has once this event has happened to it; `None` for an event
    /// that leaves the status as it was (a refund request).
    pub fn status(&self) -> Option<OrderStatus> {
        Some(match self {
            Self::Created(_) => OrderStatus::Created,
            Self::Paid(_) => OrderStatus::Paid,
            Self::PaymentFailed(_) => OrderStatus::PaymentFailed,
            Self::Cancelled(_) => OrderStatus::Cancelled,
            Self::Shipped(_) => OrderStatus::Shipped,
            Self::Delivered(_) => OrderStatus::Delivered,
            Self::RefundRequested(_) => return None,
        })
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => order::CREATED,
            Self::Paid(_) => order::PAID,
            Self::PaymentFailed(_) => order::PAYMENT_FAILED,
            Self::Cancelled(_) => order::CANCELLED,
            Self::Shipped(_) => order::SHIPPED,
            Self::Delivered(_) => order::DELIVERED,
            Self::RefundRequested(_) => order::REFUND_REQUESTED,
        }
    }

    pub fn data(&self) -> serde_json::Value {
        let value = match self {
            Self::Created(e) => serde_json::to_value(e),
            Self::Paid(e) => serde_json::to_value(e),
            Self::PaymentFailed(e) => serde_json::to_value(e),
            Self::Cancelled(e) => serde_json::to_value(e),
            Self::Shipped(e) => serde_json::to_value(e),
            Self::Delivered(e) => serde_json::to_value(e),
            Self::RefundRequested(e) => serde_json::to_value(e),
        };
        value.unwrap_or_default()
    }

    /// Reads a stored event back; `None` for event types that are not about orders.
    pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<Option<Self>, DecodeError> {
        fn de<T: serde::de::DeserializeOwned>(
            event_type: &str,
            data: &serde_json::Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(data).map_err(|source| DecodeError {
                event_type: event_type.to_owned(),
                source,
            })
        }
        Ok(Some(match event_type {
            order::CREATED => Self::Created(Box::new(de(event_type, data)?)),
            order::PAID => Self::Paid(de(event_type, data)?),
            order::PAYMENT_FAILED => Self::PaymentFailed(de(event_type, data)?),
            order::CANCELLED => Self::Cancelled(de(event_type, data)?),
            order::SHIPPED => Self::Shipped(de(event_type, data)?),
            order::DELIVERED => Self::Delivered(de(event_type, data)?),
            order::REFUND_REQUESTED => Self::RefundRequested(de(event_type, data)?),
            _ => return Ok(None),
        }))
    }

    /// A human-readable reason the event gives for the status it leads to.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::PaymentFailed(e) => Some(&e.reason),
            Self::Cancelled(e) => e.reason.as_deref(),
            _ => None,
        }
    }
}

/// A refund the order cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefused {
    #[error(transparent)]
    Status(#[from] Refused),
    /// More than is left, or nothing.
    #[error("must be between 1 and {left}, what is left to refund")]
    Amount { left: i64 },
    /// The idempotency key was used for another refund of this order.
    #[error("this Idempotency-Key was used for a different refund")]
    KeyReused,
}

/// A command refused because of the order's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {status} cannot be {action}")]
pub struct Refused {
    pub status: OrderStatus,
    pub action: &'static str,
}

/// An order: the state folded from its events. Commands answer with it and the read model
/// stores it, so a client sees one shape whichever side answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// Why the order has its status, when that was given (a cancellation reason, a
    /// payment decline).
    pub status_reason: Option<String>,
    pub items: Vec<OrderLine>,
    pub currency: String,
    /// Sum of the line totals, in minor units.
    pub total_amount: i64,
    pub shipping_address: ShippingAddress,
    /// The customer's tax id, for the invoice, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tax_id: Option<String>,
    /// The refunds requested so far (the aggregate's own bookkeeping: the payment shows
    /// what was refunded, `GET /api/payments?orderId=`).
    #[serde(skip)]
    pub refunds: Vec<OrderRefundRequested>,
    /// The order's stream version; pass as `min_version` to read your own write.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a stream cannot be folded into an order.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the stream does not start with order.created")]
    NoCreation,
    #[error("{event_type} at version {version} is not allowed after {status}")]
    Impossible {
        event_type: &'static str,
        version: u64,
        status: OrderStatus,
    },
}

impl Order {
    /// Folds a stream, oldest first, into the order's state; `None` for an empty stream.
    pub fn from_history(history: &[RecordedEvent]) -> Result<Option<Self>, HistoryError> {
        let mut order: Option<Self> = None;
        for recorded in history {
            let Some(event) = OrderEvent::decode(&recorded.event.event_type, &recorded.event.data)?
            else {
                continue;
            };
            let at = recorded.event.timestamp;
            order = Some(match order {
                None => Self::created(recorded.event.aggregate_id, &event, recorded.version, at)?,
                Some(order) => order.evolve(&event, recorded.version, at)?,
            });
        }
        Ok(order)
    }

    /// The state an `order.created` event starts.
    pub fn created(
        id: Uuid,
        event: &OrderEvent,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<Self, HistoryError> {
        let OrderEvent::Created(created) = event else {
            return Err(HistoryError::NoCreation);
        };
        Ok(Self {
            id,
            customer_id: created.customer_id,
            status: OrderStatus::Created,
            status_reason: None,
            items: created.items.clone(),
            currency: created.currency.clone(),
            total_amount: created.total_amount,
            shipping_address: created.shipping_address.clone(),
            customer_tax_id: created.customer_tax_id.clone(),
            refunds: Vec::new(),
            version,
            created_at: at,
            updated_at: at,
        })
    }

    /// The state after `event`, which must be allowed by the state machine.
    pub fn evolve(
        mut self,
        event: &OrderEvent,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<Self, HistoryError> {
        let status = self.status.after(event).ok_or(HistoryError::Impossible {
            event_type: event.event_type(),
            version,
            status: self.status,
        })?;
        if event.status().is_some() {
            self.status_reason = event.reason().map(str::to_owned);
        }
        if let OrderEvent::RefundRequested(refund) = event {
            self.refunds.push(refund.clone());
        }
        self.status = status;
        self.version = version;
        self.updated_at = at;
        Ok(self)
    }

    /// Decides whether `event` may happen now: the one gate every transition passes.
    pub fn decide(&self, event: OrderEvent) -> Result<OrderEvent, Refused> {
        let action = match &event {
            OrderEvent::Created(_) => "created again",
            OrderEvent::Paid(_) => "paid",
            OrderEvent::PaymentFailed(_) => "marked as payment failed",
            OrderEvent::Cancelled(_) => "cancelled",
            OrderEvent::Shipped(_) => "shipped",
            OrderEvent::Delivered(_) => "delivered",
            OrderEvent::RefundRequested(_) => "refunded",
        };
        match self.status.after(&event) {
            Some(_) => Ok(event),
            None => Err(Refused {
                status: self.status,
                action,
            }),
        }
    }

    /// What is left to refund: the total, less every refund requested.
    pub fn refundable(&self) -> i64 {
        self.total_amount - self.refunds.iter().map(|r| r.amount).sum::<i64>()
    }

    /// Asks for `amount` of the order back under `refund_id`, at most what is left to
    /// refund. A request whose id the order has seen is answered with the refund it
    /// made (`Ok(None)`: nothing new happens), provided it asks for the same.
    pub fn request_refund(
        &self,
        refund: OrderRefundRequested,
    ) -> Result<Option<OrderEvent>, RefundRefused> {
        if let Some(earlier) = self
            .refunds
            .iter()
            .find(|r| r.refund_id == refund.refund_id)
        {
            return if (earlier.amount, &earlier.reason) == (refund.amount, &refund.reason) {
                Ok(None)
            } else {
                Err(RefundRefused::KeyReused)
            };
        }
        let event = self.decide(OrderEvent::RefundRequested(refund.clone()))?;
        let left = self.refundable();
        if !(1..=left).contains(&refund.amount) {
            return Err(RefundRefused::Amount { left });
        }
        Ok(Some(event))
    }

    /// Cancels the order, noting whether its payment must be refunded.
    pub fn cancel(&self, by: Uuid, reason: Option<String>) -> Result<OrderEvent, Refused> {
        let refund_due = self.status == OrderStatus::Paid;
        self.decide(OrderEvent::Cancelled(OrderCancelled {
            reason,
            cancelled_by: by,
            refund_due,
            refunded_before: self.total_amount - self.refundable(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use oxcart_events::{Metadata, NewEvent};

    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: " Ada ".into(),
            line1: "1 Road".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            region: None,
            postal_code: "N1".into(),
            country: "gb".into(),
        }
    }

    fn product(price: i64, currency: &str) -> ProductSnapshot {
        ProductSnapshot {
            id: Uuid::now_v7(),
            sku: "SKU".into(),
            name: "Mug".into(),
            price,
            currency: currency.into(),
            tax_class: "standard".into(),
        }
    }

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().filter_map(|e| e.pointer.as_deref()).collect()
    }

    #[test]
    fn placing_prices_from_the_catalog() {
        let (a, b) = (product(1450, "EUR"), product(300, "EUR"));
        let command = PlaceOrder::parse(
            vec![(a.id, 2), (b.id, 3)],
            address(),
            "tok_success".into(),
            None,
        )
        .unwrap();
        assert_eq!(command.shipping_address.name, "Ada");
        assert_eq!(command.shipping_address.country, "GB");
        assert_eq!(command.shipping_address.line2, None);
        let created = place(Uuid::now_v7(), &command, &[a, b]).unwrap();
        assert_eq!(created.total_amount, 2 * 1450 + 3 * 300);
        assert_eq!(created.items[0].line_total, 2900);
        assert_eq!(created.currency, "EUR");
    }

    #[test]
    fn requests_are_checked_line_by_line() {
        let id = Uuid::now_v7();
        let errors = PlaceOrder::parse(
            vec![(id, 0), (Uuid::now_v7(), 1001), (id, 1)],
            address(),
            "tok_success".into(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            pointers(&errors),
            [
                "#/items/0/quantity",
                "#/items/1/quantity",
                "#/items/2/productId"
            ]
        );
        let errors = PlaceOrder::parse(vec![], address(), "tok_success".into(), None).unwrap_err();
        assert_eq!(pointers(&errors), ["#/items"]);
        let mut bad = address();
        bad.country = "Britain".into();
        bad.city = String::new();
        let errors = PlaceOrder::parse(vec![(id, 1)], bad, "tok_success".into(), None).unwrap_err();
        assert_eq!(
            pointers(&errors),
            ["#/shippingAddress/city", "#/shippingAddress/country"]
        );
    }

    #[test]
    fn unknown_products_and_mixed_currencies_are_refused() {
        let (eur, usd) = (product(100, "EUR"), product(100, "USD"));
        let command = PlaceOrder::parse(
            vec![(eur.id, 1), (Uuid::now_v7(), 1), (usd.id, 1)],
            address(),
            "tok_success".into(),
            None,
        )
        .unwrap();
        let errors = place(Uuid::now_v7(), &command, &[eur, usd]).unwrap_err();
        assert_eq!(
            pointers(&errors),
            ["#/items/1/productId", "#/items/2/productId"]
        );
    }

    #[test]
    fn totals_that_overflow_are_refused() {
        let big = product(i64::MAX / 2, "EUR");
        let command =
            PlaceOrder::parse(vec![(big.id, 3)], address(), "tok_success".into(), None).unwrap();
        let errors = place(Uuid::now_v7(), &command, &[big]).unwrap_err();
        assert_eq!(pointers(&errors), ["#/items"]);
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let id = Uuid::now_v7();
        let a = PlaceOrder::parse(vec![(id, 1)], address(), "tok_success".into(), None).unwrap();
        let b = PlaceOrder::parse(vec![(id, 2)], address(), "tok_success".into(), None).unwrap();
        assert_eq!(
            a.fingerprint(),
            PlaceOrder::parse(vec![(id, 1)], address(), "tok_success".into(), None)
                .unwrap()
                .fingerprint()
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn the_state_machine_allows_exactly_the_documented_transitions() {
        let user = Uuid::now_v7();
        let events = [
            OrderEvent::Paid(OrderPaid {
                payment_id: "p".into(),
                amount: 1,
            }),
            OrderEvent::PaymentFailed(OrderPaymentFailed {
                reason: "declined".into(),
            }),
            OrderEvent::Cancelled(OrderCancelled {
                reason: None,
                cancelled_by: user,
                refund_due: false,
                refunded_before: 0,
            }),
            OrderEvent::Shipped(OrderShipped { shipped_by: user }),
            OrderEvent::Delivered(OrderDelivered { delivered_by: user }),
        ];
        let mut allowed = Vec::new();
        for from in OrderStatus::ALL {
            for event in &events {
                if let Some(to) = from.after(event) {
                    allowed.push(format!("{from}->{to}"));
                }
            }
        }
        assert_eq!(
            allowed,
            [
                "CREATED->PAID",
                "CREATED->PAYMENT_FAILED",
                "CREATED->CANCELLED",
                "PAID->CANCELLED",
                "PAID->SHIPPED",
                "SHIPPED->DELIVERED"
            ]
        );
    }

    fn recorded(id: Uuid, version: u64, event: &OrderEvent) -> RecordedEvent {
        RecordedEvent {
            position: version as i64,
            version,
            event: NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().into(),
                schema_version: oxcart_events::types::version(event.event_type()),
                aggregate_type: AGGREGATE.into(),
                aggregate_id: id,
                user_id: None,
                timestamp: Utc::now(),
                data: event.data(),
                metadata: Metadata::default(),
            },
        }
    }

    #[test]
    fn history_folds_into_state_and_decisions_follow_it() {
        let p = product(500, "EUR");
        let command =
            PlaceOrder::parse(vec![(p.id, 2)], address(), "tok_success".into(), None).unwrap();
        let customer = Uuid::now_v7();
        let created = OrderEvent::Created(Box::new(place(customer, &command, &[p]).unwrap()));
        let paid = OrderEvent::Paid(OrderPaid {
            payment_id: "pay_1".into(),
            amount: 1000,
        });
        let id = Uuid::now_v7();
        let order = Order::from_history(&[recorded(id, 1, &created), recorded(id, 2, &paid)])
            .unwrap()
            .unwrap();
        assert_eq!(
            (order.status, order.version, order.total_amount),
            (OrderStatus::Paid, 2, 1000)
        );

        let OrderEvent::Cancelled(cancel) = order
            .cancel(customer, Some("changed my mind".into()))
            .unwrap()
        else {
            panic!("not a cancellation")
        };
        assert!(cancel.refund_due);
        let cancelled = order
            .clone()
            .evolve(&OrderEvent::Cancelled(cancel), 3, Utc::now())
            .unwrap();
        assert_eq!(cancelled.status_reason.as_deref(), Some("changed my mind"));
        let refused = cancelled.cancel(customer, None).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "an order that is CANCELLED cannot be cancelled"
        );
    }

    #[test]
    fn impossible_histories_are_reported() {
        let id = Uuid::now_v7();
        let paid = OrderEvent::Paid(OrderPaid {
            payment_id: "p".into(),
            amount: 1,
        });
        assert!(matches!(
            Order::from_history(&[recorded(id, 1, &paid)]),
            Err(HistoryError::NoCreation)
        ));
        assert!(Order::from_history(&[]).unwrap().is_none());
    }
}

/// The event payloads are a contract with every consumer; a change to their shape must be
/// deliberate (`cargo insta review`).
#[cfg(test)]
mod contract {
    use chrono::TimeZone;
    use oxcart_events::{Metadata, NewEvent, RecordedEvent};

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn events() -> Vec<OrderEvent> {
        let address = ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            region: None,
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        };
        let line = OrderLine {
            product_id: id(2),
            sku: "MUG-01".into(),
            name: "Enamel mug".into(),
            price: 1450,
            quantity: 2,
            line_total: 2900,
            tax_class: "standard".into(),
        };
        vec![
            OrderEvent::Created(Box::new(OrderCreated {
                customer_id: id(1),
                items: vec![line],
                currency: "EUR".into(),
                total_amount: 2900,
                shipping_address: address,
                payment_token: Some("tok_success".into()),
                customer_tax_id: None,
            })),
            OrderEvent::Paid(OrderPaid {
                payment_id: "pay_123".into(),
                amount: 2900,
            }),
            OrderEvent::PaymentFailed(OrderPaymentFailed {
                reason: "card declined".into(),
            }),
            OrderEvent::Cancelled(OrderCancelled {
                reason: Some("wrong size".into()),
                cancelled_by: id(1),
                refund_due: true,
                refunded_before: 0,
            }),
            OrderEvent::Shipped(OrderShipped { shipped_by: id(9) }),
            OrderEvent::Delivered(OrderDelivered {
                delivered_by: id(9),
            }),
            OrderEvent::RefundRequested(OrderRefundRequested {
                refund_id: id(7),
                amount: 500,
                currency: "EUR".into(),
                reason: "arrived damaged".into(),
                requested_by: id(9),
            }),
        ]
    }

    /// Every payload orders ever stored, as kept in `fixtures/events/<type>/v<N>.json`,
    /// reads as an event today; and what orders write today is of the current version's
    /// shape (see `oxcart_events::evolution`).
    #[test]
    fn stored_payloads_of_every_version_read_as_today() {
        let examples: Vec<(&str, serde_json::Value)> = events()
            .iter()
            .map(|e| (e.event_type(), e.data()))
            .collect();
        oxcart_test_util::evolution::check_fixtures(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events"),
            "order.",
            &examples,
            |event_type, data| match OrderEvent::decode(event_type, data) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not an order event".into()),
                Err(e) => Err(e.to_string()),
            },
        );
    }

    #[test]
    fn event_payloads() {
        let payloads: Vec<_> = events()
            .iter()
            .map(|e| serde_json::json!({ "eventType": e.event_type(), "data": e.data() }))
            .collect();
        insta::assert_json_snapshot!("order_event_payloads", payloads);
        for event in events() {
            assert_eq!(
                OrderEvent::decode(event.event_type(), &event.data()).unwrap(),
                Some(event)
            );
        }
    }

    #[test]
    fn envelope() {
        let created = &events()[0];
        let recorded = RecordedEvent {
            position: 42,
            version: 1,
            event: NewEvent {
                event_id: id(7),
                event_type: created.event_type().into(),
                schema_version: oxcart_events::types::version(created.event_type()),
                aggregate_type: AGGREGATE.into(),
                aggregate_id: id(3),
                user_id: Some(id(1)),
                timestamp: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
                data: created.data(),
                metadata: Metadata {
                    correlation_id: "req-1".into(),
                    causation_id: "req-1".into(),
                    idempotency_key: Some("key-1".into()),
                    request_fingerprint: Some("ab12".into()),
                    traceparent: None,
                },
            },
        };
        insta::assert_json_snapshot!("order_created_envelope", recorded.to_json());
    }
}
