//! The payments service's part in the saga (consumer group `payment-service`).
//!
//! ```text
//! order.created   ─▶ a pending payment (amount, currency, card token)
//! stock.reserved  ─▶ charge ─▶ payment.succeeded | payment.failed
//! stock.rejected  ─▶ the pending payment is cancelled; nothing is charged
//! order.cancelled ─▶ refund if charged (payment.refunded), else cancel the pending one
//! ```
//!
//! The provider is called outside any transaction (it may be slow), with the order id as
//! idempotency key; the result is then recorded, with the event's claim and the outcome
//! event, in one transaction. A crash between the two means the event is redelivered,
//! the provider answers the repeated key with its first answer, and nothing is charged
//! twice.

use std::sync::Arc;

use async_trait::async_trait;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, NewEvent, RecordedEvent};
use oxcart_platform::db::{self, Db};
use serde::Deserialize;
use serde_json::json;
use sqlx::Row as _;
use uuid::Uuid;

use crate::provider::{Charge, ChargeOutcome, PaymentProvider, Refund};
use crate::{AGGREGATE, PaymentStatus, payment_id};

pub const GROUP: &str = "payment-service";

/// What payments reads of `order.created` (a tolerant reader).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderCreated {
    pub customer_id: Uuid,
    pub total_amount: i64,
    pub currency: String,
    #[serde(default)]
    pub payment_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AboutOrder {
    order_id: Uuid,
}

/// The columns of a payment the saga acts on.
pub(crate) struct Row {
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    pub token: Option<String>,
    pub provider_reference: Option<String>,
}

/// An event about an order's payment: which order and payment, how much, and the one
/// field (`detail`) that sets this event apart.
fn payment_event(
    cause: &RecordedEvent,
    event_type: &str,
    order_id: Uuid,
    payment: &Row,
    (field, value): (&str, String),
) -> NewEvent {
    let id = payment_id(order_id);
    let mut data = json!({ "orderId": order_id, "paymentId": id, "amount": payment.amount,
                           "currency": payment.currency });
    data[field] = json!(value);
    NewEvent::caused_by(cause, event_type, AGGREGATE, id, data)
}

/// What a charge came to: the payment's new status, the provider's reference or the
/// decline reason, and the event that tells the order.
pub(crate) struct Charged {
    pub status: PaymentStatus,
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub event: NewEvent,
}

/// Charges `payment` for its order, with the order id as idempotency key.
pub(crate) async fn charge_order(
    provider: &dyn PaymentProvider,
    cause: &RecordedEvent,
    order_id: Uuid,
    payment: &Row,
) -> Result<Charged, BoxError> {
    let outcome = provider
        .charge(&Charge {
            idempotency_key: order_id.to_string(),
            amount: payment.amount,
            currency: payment.currency.clone(),
            token: payment.token.clone(),
        })
        .await?;
    Ok(match outcome {
        ChargeOutcome::Approved { reference } => {
            let detail = ("providerReference", reference.clone());
            Charged {
                status: PaymentStatus::Succeeded,
                event: payment_event(cause, "payment.succeeded", order_id, payment, detail),
                reference: Some(reference),
                reason: None,
            }
        }
        ChargeOutcome::Declined { code } => {
            let detail = ("reason", code.clone());
            Charged {
                status: PaymentStatus::Failed,
                event: payment_event(cause, "payment.failed", order_id, payment, detail),
                reference: None,
                reason: Some(code),
            }
        }
    })
}

pub struct PaymentSaga {
    db: Db,
    outbox: Arc<dyn Outbox>,
    /// The log, to read an `order.created` that has not been delivered yet.
    log: Arc<dyn EventStore>,
    provider: Arc<dyn PaymentProvider>,
}

impl PaymentSaga {
    /// `store` is both where payments appends its events and the log it reads an order's
    /// `order.created` from.
    pub fn new<S: Outbox + EventStore>(
        db: Db,
        store: Arc<S>,
        provider: Arc<dyn PaymentProvider>,
    ) -> Self {
        Self {
            db,
            outbox: store.clone(),
            log: store,
            provider,
        }
    }

    /// The order's payment, recorded from its `order.created` first if that has not been
    /// delivered yet. On the embedded log it always has been; on Kafka it travels on the
    /// `orders` topic while `stock.reserved` travels on `catalog`, and Kafka orders only
    /// within a partition, so after a restart with a backlog the reservation can come
    /// first. Reading the cause from the log (and claiming it, so that its own delivery
    /// later changes nothing) lets the charge go ahead instead of waiting on an event
    /// that may be queued behind this one.
    async fn payment_or_intent(&self, order_id: Uuid) -> Result<Row, BoxError> {
        if let Some(payment) = self.payment(order_id).await? {
            return Ok(payment);
        }
        let created = self
            .log
            .read_stream(order_id)
            .await?
            .into_iter()
            .find(|e| e.event.event_type == "order.created")
            .ok_or_else(|| format!("order {order_id} has no order.created in the log"))?;
        self.intend(&created).await?;
        Ok(self
            .payment(order_id)
            .await?
            .ok_or_else(|| format!("no payment recorded for order {order_id}"))?)
    }

    async fn payment(&self, order_id: Uuid) -> Result<Option<Row>, BoxError> {
        let row = db::query(
            "SELECT status, amount, currency, payment_token, provider_reference FROM payments WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Row {
            status: PaymentStatus::parse(&row.try_get::<String, _>("status")?)
                .ok_or("unreadable payment status")?,
            amount: row.try_get("amount")?,
            currency: row.try_get("currency")?,
            token: row.try_get("payment_token")?,
            provider_reference: row.try_get("provider_reference")?,
        }))
    }

    async fn seen(&self, event: &RecordedEvent) -> Result<bool, BoxError> {
        Ok(db::claimed(&self.db, GROUP, event.event.event_id).await?)
    }

    async fn intend(&self, cause: &RecordedEvent) -> Result<(), BoxError> {
        let order: OrderCreated = serde_json::from_value(cause.event.data.clone())?;
        let order_id = cause.event.aggregate_id;
        let Some(mut tx) = db::begin_claimed(&self.db, GROUP, cause.event.event_id).await? else {
            return Ok(());
        };
        let now = db::timestamp(db::now());
        db::query(
            "INSERT INTO payments (id, order_id, user_id, amount, currency, payment_token, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(payment_id(order_id).to_string())
        .bind(order_id.to_string())
        .bind(order.customer_id.to_string())
        .bind(order.total_amount)
        .bind(&order.currency)
        .bind(order.payment_token)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(name = "charge", skip_all, fields(order.id = %order_id))]
    async fn charge(&self, cause: &RecordedEvent, order_id: Uuid) -> Result<(), BoxError> {
        if self.seen(cause).await? {
            return Ok(());
        }
        let payment = self.payment_or_intent(order_id).await?;
        if payment.status != PaymentStatus::Pending {
            return Ok(());
        }
        let id = payment_id(order_id);
        let Charged {
            status,
            reference,
            reason,
            event,
        } = charge_order(self.provider.as_ref(), cause, order_id, &payment).await?;
        let Some(mut tx) = db::begin_claimed(&self.db, GROUP, cause.event.event_id).await? else {
            return Ok(());
        };
        let updated = db::query(
            "UPDATE payments SET status = $1, provider_reference = $2, failure_reason = $3, updated_at = $4 \
             WHERE order_id = $5 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(reference)
        .bind(&reason)
        .bind(db::timestamp(db::now()))
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            // Only another process racing on this order gets here; the embedded log hands
            // one order's events to one lane in order. Loud, and left to an operator.
            return Err(
                format!("payment of order {order_id} changed while it was being charged").into(),
            );
        }
        let appended = self.outbox.append_in(&mut tx, id, 0, vec![event]).await?;
        tx.commit().await?;
        self.outbox.committed(appended.position);
        tracing::info!(order_id = %order_id, outcome = status.as_str(), reason = reason.as_deref(), "charge");
        Ok(())
    }

    async fn settle_cancellation(
        &self,
        cause: &RecordedEvent,
        order_id: Uuid,
    ) -> Result<(), BoxError> {
        if self.seen(cause).await? {
            return Ok(());
        }
        let Some(payment) = self.payment(order_id).await? else {
            return Ok(());
        };
        match payment.status {
            PaymentStatus::Pending => {
                let Some(mut tx) = db::begin_claimed(&self.db, GROUP, cause.event.event_id).await?
                else {
                    return Ok(());
                };
                db::query(
                    "UPDATE payments SET status = 'cancelled', updated_at = $1 WHERE order_id = $2 AND status = 'pending'",
                )
                .bind(db::timestamp(db::now()))
                .bind(order_id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            PaymentStatus::Succeeded if cause.event.event_type == "order.cancelled" => {
                self.refund(cause, order_id, payment).await
            }
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "refund", skip_all)]
    async fn refund(
        &self,
        cause: &RecordedEvent,
        order_id: Uuid,
        payment: Row,
    ) -> Result<(), BoxError> {
        let reference = self
            .provider
            .refund(&Refund {
                idempotency_key: format!("refund:{order_id}"),
                charge_reference: payment.provider_reference.clone().unwrap_or_default(),
                amount: payment.amount,
                currency: payment.currency.clone(),
            })
            .await?;
        let id = payment_id(order_id);
        let Some(mut tx) = db::begin_claimed(&self.db, GROUP, cause.event.event_id).await? else {
            return Ok(());
        };
        db::query(
            "UPDATE payments SET status = 'refunded', refund_reference = $1, updated_at = $2 \
             WHERE order_id = $3 AND status = 'succeeded'",
        )
        .bind(&reference)
        .bind(db::timestamp(db::now()))
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
        let event = payment_event(
            cause,
            "payment.refunded",
            order_id,
            &payment,
            ("refundReference", reference),
        );
        let appended = self.outbox.append_in(&mut tx, id, 1, vec![event]).await?;
        tx.commit().await?;
        self.outbox.committed(appended.position);
        tracing::info!(order_id = %order_id, amount = payment.amount, "refund");
        Ok(())
    }
}

#[async_trait]
impl Handler for PaymentSaga {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS, topics::CATALOG]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        let order_id = || -> Result<Uuid, BoxError> {
            Ok(serde_json::from_value::<AboutOrder>(event.event.data.clone())?.order_id)
        };
        match event.event.event_type.as_str() {
            "order.created" => self.intend(event).await,
            "stock.reserved" => self.charge(event, order_id()?).await,
            "stock.rejected" => self.settle_cancellation(event, order_id()?).await,
            "order.cancelled" => {
                self.settle_cancellation(event, event.event.aggregate_id)
                    .await
            }
            _ => Ok(()),
        }
    }
}
