//! Payments: charging orders whose stock is reserved, and refunding cancelled ones.
//!
//! # Layout
//! - [`provider`]: the payment-provider port and the simulated provider with its test
//!   tokens.
//! - [`saga`]: the consumer (`payment-service`) that records an intent for each new order,
//!   charges it once the catalog has reserved its stock, and refunds it if the order is
//!   cancelled after payment.
//! - `domain`: what both payment flows stand on: what payments reads of an order, the
//!   payment a flow acts on, and a charge from the provider's answer to the event.
//! - [`http`]: `GET /api/payments?orderId=` for the order's owner or an admin.
//! - [`event_sourced`]: the serverless mode's payment step: charges each new order and
//!   records the outcome in the payment's event stream alone, with no table.
//! - [`build`] and [`build_event_sourced`]: the service in either flow, from its ports and
//!   its `[payments]` section ([`PaymentsConfig`]).
//!
//! A payment's id is derived from its order's, so everything about one order's money,
//! whichever event it comes from, lands on one row and one event stream.

mod domain;
pub mod event_sourced;
pub mod http;
pub mod notices;
pub mod provider;
pub mod saga;
pub mod stripe;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oxcart_db::{self as db, Db};
use oxcart_events::EventStore;
use oxcart_events::outbox::Outbox;
use oxcart_platform::auth::Caller;
use oxcart_platform::cache::Cached;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{ProblemKind, ServiceError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::provider::{Ledger, PaymentProvider, SimulatedProvider, SqlLedger};

pub const AGGREGATE: &str = "payment";

pub const ABOUT: About = About {
    name: "payments",
    description: "Charges and refunds, made by the order saga.",
    openapi: || http::routes().into_openapi(),
};

/// The `[payments]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Who moves the money: the simulated provider (the demo's default, with its test
    /// tokens) or Stripe (`[payments.stripe]`).
    pub provider: ProviderKind,
    /// How long the simulated provider takes to answer for `tok_slow`: longer than a
    /// caller would wait for a charge, shorter than a consumer's retry budget.
    #[serde(with = "humantime_serde")]
    pub slow_delay: Duration,
    pub stripe: stripe::StripeConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Simulated,
    Stripe,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::default(),
            slow_delay: Duration::from_secs(3),
            stripe: stripe::StripeConfig::default(),
        }
    }
}

/// Payments on `db`, appending to `store` (the log it also reads an order's
/// `order.created` from): the payments routes, and the saga step that charges and
/// refunds through the provider `config` chooses. The simulated provider keeps its books
/// in a table of `db`; Stripe is `stripe`, built by the caller from `[payments.stripe]`
/// (see [`stripe::Stripe::new`]), and brings its webhook route to life.
///
/// `cache` is the spec's `payment_cache`, when this process's writes and reads share one
/// (see `oxcart_platform::cache::PAYMENTS`): the saga invalidates an order's entry around
/// every step it records, so a lookup never answers with a status the table has left.
pub fn build<S: Outbox + EventStore>(
    db: Db,
    store: Arc<S>,
    config: &PaymentsConfig,
    cache: Option<Cached>,
    stripe: Option<stripe::Stripe>,
) -> Parts {
    let provider: Arc<dyn PaymentProvider> = match stripe {
        Some(stripe) => Arc::new(stripe),
        None => Arc::new(SimulatedProvider::new(
            Arc::new(SqlLedger::new(db.clone())),
            config.slow_delay,
        )),
    };
    let stripe_webhooks = (config.provider == ProviderKind::Stripe)
        .then(|| config.stripe.webhook_secret.clone())
        .flatten()
        .map(|secret| {
            Arc::new(StripeWebhooks {
                secret,
                tolerance: config.stripe.webhook_tolerance,
                notices: notices::Notices {
                    db: db.clone(),
                    outbox: store.clone(),
                    log: store.clone(),
                    provider: Arc::clone(&provider),
                    cache: cache.clone(),
                },
            })
        });
    let payments = Payments {
        db: db.clone(),
        cache: cache.clone(),
        stripe_webhooks,
    };
    let mut saga = saga::PaymentSaga::new(db, store, provider);
    saga.cache = cache;
    Parts::routes(http::router(payments)).with_handler(Arc::new(saga))
}

/// What Stripe's webhook route needs.
pub(crate) struct StripeWebhooks {
    pub(crate) secret: SecretString,
    pub(crate) tolerance: Duration,
    pub(crate) notices: notices::Notices,
}

impl std::fmt::Debug for StripeWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWebhooks").finish_non_exhaustive()
    }
}

/// Payments with no table of their own (the serverless mode): each outcome is an event
/// of the payment's stream in `store`, and the simulated provider keeps its books in
/// `ledger`. No routes: a payment is read back through its order.
pub fn build_event_sourced(
    store: Arc<dyn EventStore>,
    ledger: Arc<dyn Ledger>,
    config: &PaymentsConfig,
) -> Parts {
    let provider = SimulatedProvider::new(ledger, config.slow_delay);
    Parts::default().with_handler(Arc::new(event_sourced::EventSourcedPayments::new(
        store,
        Arc::new(provider),
    )))
}

/// Namespace of payment ids, derived from order ids.
const PAYMENTS: Uuid = Uuid::from_u128(0x6f78_6361_7274_5061_796d_656e_7473_0001);

/// The payment (and event stream) of an order.
pub fn payment_id(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&PAYMENTS, order_id.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// The order is placed; the charge waits for its stock to be reserved.
    Pending,
    /// Charged; the provider settles it later and tells the outcome by webhook.
    Processing,
    Succeeded,
    Failed,
    Refunded,
    /// The order ended before it was charged; it never will be.
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Processing,
            Self::Succeeded,
            Self::Failed,
            Self::Refunded,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A payment as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: PaymentStatus,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    /// The provider's id of the charge, once approved.
    pub provider_reference: Option<String>,
    /// Why the provider declined, when it did (`card_declined`, `insufficient_funds`, …).
    pub failure_reason: Option<String>,
    /// The provider's id of the latest refund.
    pub refund_reference: Option<String>,
    /// What refunds have given back so far, minor units: the status stays `SUCCEEDED`
    /// until it is the whole amount, then `REFUNDED`.
    pub refunded_amount: i64,
    /// Each refund, oldest first.
    pub refunds: Vec<PaymentRefund>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefund {
    /// For a refund an admin asked for, the id `POST /api/orders/{id}/refunds` answered
    /// with; for a cancelled order's, the order's id.
    pub id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// `CANCELLATION` or `REQUEST`.
    pub source: String,
    pub reason: String,
    /// The provider's id of the refund.
    pub provider_reference: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the payments ledger holds an unreadable {0}")]
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

const COLUMNS: &str = "id, order_id, user_id, amount, currency, status, provider_reference, failure_reason, \
                       refund_reference, refunded_amount, created_at, updated_at";

fn decode(row: &AnyRow) -> Result<Payment, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("payment {what}"));
    let uuid = |column: &str| -> Result<Uuid, Error> {
        row.try_get::<String, _>(column)?
            .parse()
            .map_err(|_| corrupt(column))
    };
    let time = |column: &str| -> Result<DateTime<Utc>, Error> {
        db::parse_timestamp(&row.try_get::<String, _>(column)?).map_err(|_| corrupt(column))
    };
    Ok(Payment {
        id: uuid("id")?,
        order_id: uuid("order_id")?,
        customer_id: uuid("user_id")?,
        status: PaymentStatus::parse(&row.try_get::<String, _>("status")?)
            .ok_or_else(|| corrupt("status"))?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        provider_reference: row.try_get("provider_reference")?,
        failure_reason: row.try_get("failure_reason")?,
        refund_reference: row.try_get("refund_reference")?,
        refunded_amount: row.try_get("refunded_amount")?,
        refunds: Vec::new(),
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

fn decode_refund(row: &AnyRow) -> Result<PaymentRefund, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("refund {what}"));
    Ok(PaymentRefund {
        id: row
            .try_get::<String, _>("refund_id")?
            .parse()
            .map_err(|_| corrupt("id"))?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        source: row.try_get::<String, _>("source")?.to_ascii_uppercase(),
        reason: row.try_get("reason")?,
        provider_reference: row.try_get("provider_reference")?,
        created_at: db::parse_timestamp(&row.try_get::<String, _>("created_at")?)
            .map_err(|_| corrupt("created_at"))?,
    })
}

/// The payments service's queries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Payments {
    db: Db,
    /// An order's payments, when they are cached.
    cache: Option<Cached>,
    /// Stripe's webhook, when Stripe is the provider and its secret is set.
    stripe_webhooks: Option<Arc<StripeWebhooks>>,
}

impl Payments {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            cache: None,
            stripe_webhooks: None,
        }
    }

    /// The payments of an order, to its owner or an admin (nothing for anyone else).
    pub async fn for_order(&self, caller: &Caller, order_id: Uuid) -> Result<Vec<Payment>, Error> {
        let payments = match &self.cache {
            Some(cache) => {
                let order = order_id.to_string();
                cache
                    .get_or_fetch_in(&order, std::slice::from_ref(&order), |_| async {
                        Ok::<_, Error>(vec![(order.clone(), self.query(order_id).await?)])
                    })
                    .await?
                    .pop()
                    .unwrap_or_default()
            }
            None => self.query(order_id).await?,
        };
        Ok(payments
            .into_iter()
            .filter(|p| caller.may_access(p.customer_id))
            .collect())
    }

    async fn query(&self, order_id: Uuid) -> Result<Vec<Payment>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1");
        let mut reader = self.db.read().await?;
        let rows = db::query(&sql)
            .bind(order_id.to_string())
            .fetch_all(&mut *reader)
            .await?;
        let mut payments = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        if let Some(payment) = payments.first_mut()
            && payment.refunded_amount > 0
        {
            let refunds = db::query(
                "SELECT refund_id, amount, currency, source, reason, provider_reference, created_at \
                 FROM refunds WHERE order_id = $1 ORDER BY created_at, refund_id",
            )
            .bind(order_id.to_string())
            .fetch_all(&mut *reader)
            .await?;
            payment.refunds = refunds
                .iter()
                .map(decode_refund)
                .collect::<Result<_, _>>()?;
        }
        Ok(payments)
    }
}
