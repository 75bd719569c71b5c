//! What a payment provider tells later: outcomes that arrive asynchronously, by webhook.
//!
//! A card the provider settles at once needs none of this; a payment method that
//! settles later leaves the payment `processing` (see the saga), and the provider's
//! notice decides it:
//!
//! ```text
//! processing + succeeded ─▶ succeeded, payment.succeeded   (the order is paid)
//! processing + failed    ─▶ failed, payment.failed         (the order's stock goes back)
//! cancelled  + succeeded ─▶ refunded, payment.refunded     (the order ended meanwhile)
//! anything else          ─▶ nothing (the outcome is known already)
//! ```
//!
//! Each notice is applied at most once: its id is recorded in the transaction that
//! applies it, and a notice whose id is recorded changes nothing. A provider delivers
//! at least once, and a replayed delivery is answered as a success.

use std::sync::Arc;

use oxcart_db::{self as db, Db};
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::types::payment;
use oxcart_events::{EventStore, StreamAppend, trace};
use oxcart_platform::cache::Cached;
use uuid::Uuid;

use crate::domain::{RefundMade, Row, Source, payment_event, refund_event};
use crate::provider::{PaymentProvider, Refund};
use crate::saga::{invalidate, order_created, write_refunds};
use crate::{PaymentStatus, payment_id};

/// A provider's notice, in oxcart's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The charge `reference` went through.
    Succeeded { reference: String },
    /// The charge `reference` failed, for `code`.
    Failed { reference: String, code: String },
    /// A notice oxcart does not act on (its type).
    Other(String),
}

impl Notice {
    fn kind(&self) -> &str {
        match self {
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Other(kind) => kind,
        }
    }
}

/// What applying a notice came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The payment moved, and its event was appended.
    Changed,
    /// Recorded; nothing to change (the outcome was known, or the notice is of no
    /// interest, or names no payment of oxcart's).
    Nothing,
    /// Seen before: not applied again.
    Duplicate,
}

/// Applies notices to payments; cheap to clone.
#[derive(Clone)]
pub struct Notices {
    pub(crate) db: Db,
    pub(crate) outbox: Arc<dyn Outbox>,
    pub(crate) log: Arc<dyn EventStore>,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    pub(crate) cache: Option<Cached>,
}

/// A payment, found by the provider's reference.
struct Found {
    order_id: Uuid,
    row: Row,
}

/// The change a notice makes to its payment.
enum Change {
    /// A processing payment settled: its new status, the decline reason if it failed,
    /// and the event that tells the order.
    Settle(Settled),
    /// The order ended while its payment settled: the provider refunded it whole.
    Refund(RefundMade),
}

struct Settled {
    to: PaymentStatus,
    reason: Option<String>,
    event_type: &'static str,
    field: (&'static str, String),
}

impl Notices {
    /// Applies the notice `id` of `provider` once.
    pub async fn apply(
        &self,
        provider: &str,
        id: &str,
        notice: &Notice,
    ) -> Result<Applied, BoxError> {
        if self.seen(provider, id).await? {
            return Ok(Applied::Duplicate);
        }
        let reference = match notice {
            Notice::Succeeded { reference } | Notice::Failed { reference, .. } => Some(reference),
            Notice::Other(_) => None,
        };
        let found = match reference {
            Some(reference) => self.payment(reference).await?,
            None => None,
        };
        let change = match &found {
            Some(found) => self.decide(found, notice).await?,
            None => None,
        };
        // The event's cause: the order's `order.created`, whose correlation it carries.
        let cause = match (&found, &change) {
            (Some(found), Some(_)) => Some(order_created(self.log.as_ref(), found.order_id).await?),
            _ => None,
        };
        let mut tx = self.db.begin().await?;
        let fresh = db::query(
            "INSERT INTO provider_notices (provider, notice_id, notice_type, received_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (provider, notice_id) DO NOTHING",
        )
        .bind(provider)
        .bind(id)
        .bind(notice.kind())
        .bind(db::timestamp(db::now()))
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(Applied::Duplicate);
        }
        let (Some(found), Some(change), Some(cause)) = (found, change, cause) else {
            tx.commit().await?;
            return Ok(Applied::Nothing);
        };
        let order = found.order_id.to_string();
        let mut events = match change {
            Change::Settle(settle) => {
                let moved = db::query(
                    "UPDATE payments SET status = $1, failure_reason = $2, updated_at = $3 \
                     WHERE order_id = $4 AND status = $5",
                )
                .bind(settle.to.as_str())
                .bind(&settle.reason)
                .bind(db::timestamp(db::now()))
                .bind(&order)
                .bind(PaymentStatus::Processing.as_str())
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() == 0 {
                    // The saga moved it between the read and now; the provider delivers
                    // again.
                    return Err(format!(
                        "payment of order {order} changed while a notice was applied"
                    )
                    .into());
                }
                vec![payment_event(
                    &cause,
                    settle.event_type,
                    found.order_id,
                    &found.row,
                    settle.field,
                )]
            }
            Change::Refund(refund) => {
                write_refunds(
                    &mut tx,
                    &[(found.order_id, &refund)],
                    &db::timestamp(db::now()),
                )
                .await?;
                vec![refund_event(&cause, found.order_id, &refund)]
            }
        };
        trace::stamp(&trace::append_span(&events), &mut events);
        let append = StreamAppend {
            aggregate_id: payment_id(found.order_id),
            // A notice settles a payment that has told nothing yet.
            expected_version: 0,
            events,
        };
        let appended = self.outbox.append_all_in(&mut tx, vec![append]).await?;
        self.invalidate(&order).await;
        tx.commit().await?;
        self.invalidate(&order).await;
        if let Some(position) = appended.iter().map(|a| a.position).max() {
            self.outbox.committed(position);
        }
        tracing::info!(order_id = %order, notice = notice.kind(), "provider notice applied");
        Ok(Applied::Changed)
    }

    /// What `notice` changes of the payment, calling the provider where it must (a
    /// refund of a payment whose order ended while it settled).
    async fn decide(&self, found: &Found, notice: &Notice) -> Result<Option<Change>, BoxError> {
        Ok(match (found.row.status, notice) {
            (PaymentStatus::Processing, Notice::Succeeded { reference }) => {
                Some(Change::Settle(Settled {
                    to: PaymentStatus::Succeeded,
                    reason: None,
                    event_type: payment::SUCCEEDED,
                    field: ("providerReference", reference.clone()),
                }))
            }
            (PaymentStatus::Processing, Notice::Failed { code, .. }) => {
                Some(Change::Settle(Settled {
                    to: PaymentStatus::Failed,
                    reason: Some(code.clone()),
                    event_type: payment::FAILED,
                    field: ("reason", code.clone()),
                }))
            }
            (PaymentStatus::Cancelled, Notice::Succeeded { reference }) => {
                // The same key as the saga's refund of a cancelled order: whoever asks
                // first, one refund.
                let reference = self
                    .provider
                    .refund(&Refund {
                        idempotency_key: format!("refund:{}", found.order_id),
                        charge_reference: reference.clone(),
                        amount: found.row.amount,
                        currency: found.row.currency.clone(),
                    })
                    .await?;
                Some(Change::Refund(RefundMade {
                    refund_id: found.order_id,
                    amount: found.row.amount,
                    currency: found.row.currency.clone(),
                    source: Source::Cancellation,
                    reason: "order cancelled".to_owned(),
                    reference,
                }))
            }
            _ => None,
        })
    }

    async fn seen(&self, provider: &str, id: &str) -> Result<bool, BoxError> {
        let seen: Option<i64> = db::query_scalar(
            "SELECT 1 FROM provider_notices WHERE provider = $1 AND notice_id = $2",
        )
        .bind(provider)
        .bind(id)
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        Ok(seen.is_some())
    }

    async fn payment(&self, reference: &str) -> Result<Option<Found>, BoxError> {
        let row: Option<(String, String, i64, String, Option<String>)> = db::query_as(
            "SELECT order_id, status, amount, currency, payment_token FROM payments \
             WHERE provider_reference = $1",
        )
        .bind(reference)
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        let Some((order_id, status, amount, currency, token)) = row else {
            return Ok(None);
        };
        Ok(Some(Found {
            order_id: order_id.parse()?,
            row: Row {
                status: PaymentStatus::parse(&status).ok_or("unreadable payment status")?,
                amount,
                currency,
                token,
                provider_reference: Some(reference.to_owned()),
                refunded: 0,
                refunds: 0,
            },
        }))
    }

    async fn invalidate(&self, order: &str) {
        invalidate(self.cache.as_ref(), &[order.to_owned()]).await;
    }
}
