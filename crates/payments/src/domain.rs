//! What both payment flows stand on: the server's saga (`saga`, on SQL) and the Lambda
//! variant's event-sourced one (`event_sourced`, on DynamoDB). What payments reads of an
//! order, the payment a flow acts on, and a charge from the provider's answer to the
//! event that tells the order.

use oxcart_events::store::BoxError;
use oxcart_events::types::payment;
use oxcart_events::{NewEvent, RecordedEvent};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::provider::{Charge, ChargeOutcome, PaymentProvider};
use crate::{AGGREGATE, PaymentStatus, payment_id};

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

/// The columns of a payment the saga acts on.
pub(crate) struct Row {
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    pub token: Option<String>,
    pub provider_reference: Option<String>,
    /// What refunds have given back so far.
    pub refunded: i64,
    /// How many refunds there have been: the payment's stream holds its charge's
    /// outcome, then one event per refund.
    pub refunds: u64,
}

/// What payments reads of `order.refund_requested` (a tolerant reader).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundRequested {
    pub refund_id: Uuid,
    pub amount: i64,
    pub reason: String,
}

/// Why a refund is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The order was cancelled after it was paid: whatever is left of the payment.
    Cancellation,
    /// An admin asked for it (`POST /api/orders/{id}/refunds`).
    Request,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cancellation => "cancellation",
            Self::Request => "request",
        }
    }
}

/// A refund to ask the provider for.
pub(crate) struct Asked {
    /// A cancellation's refund has its order's id.
    pub refund_id: Uuid,
    pub amount: i64,
    pub source: Source,
    pub reason: String,
}

/// A refund the provider made.
#[derive(Debug, Clone)]
pub(crate) struct RefundMade {
    pub refund_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub source: Source,
    pub reason: String,
    /// The provider's id of the refund.
    pub reference: String,
}

/// `payment.refunded` (v2) for `refund`: its amount, not the payment's.
pub(crate) fn refund_event(cause: &RecordedEvent, order_id: Uuid, refund: &RefundMade) -> NewEvent {
    let id = payment_id(order_id);
    let data = json!({
        "orderId": order_id, "paymentId": id, "amount": refund.amount, "currency": refund.currency,
        "refundReference": refund.reference, "refundId": refund.refund_id.to_string(),
        "source": refund.source.as_str(), "reason": refund.reason,
    });
    NewEvent::caused_by(cause, payment::REFUNDED, AGGREGATE, id, data)
}

impl Row {
    /// The payment an order's `order.created` asks for, not charged yet.
    pub(crate) fn pending(order: &OrderCreated) -> Self {
        Self {
            status: PaymentStatus::Pending,
            amount: order.total_amount,
            currency: order.currency.clone(),
            token: order.payment_token.clone(),
            provider_reference: None,
            refunded: 0,
            refunds: 0,
        }
    }
}

/// An event about an order's payment: which order and payment, how much, and the one
/// field (`detail`) that sets this event apart.
pub(crate) fn payment_event(
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
/// decline reason, and the event that tells the order (none while the provider is
/// still processing: the outcome comes later, by webhook).
pub(crate) struct Charged {
    pub status: PaymentStatus,
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub event: Option<NewEvent>,
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
                event: Some(payment_event(
                    cause,
                    payment::SUCCEEDED,
                    order_id,
                    payment,
                    detail,
                )),
                reference: Some(reference),
                reason: None,
            }
        }
        ChargeOutcome::Declined { code } => {
            let detail = ("reason", code.clone());
            Charged {
                status: PaymentStatus::Failed,
                event: Some(payment_event(
                    cause,
                    payment::FAILED,
                    order_id,
                    payment,
                    detail,
                )),
                reference: None,
                reason: Some(code),
            }
        }
        ChargeOutcome::Processing { reference } => Charged {
            status: PaymentStatus::Processing,
            reference: Some(reference),
            reason: None,
            event: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use oxcart_events::Metadata;

    use super::*;

    /// Every payment payload ever stored reads as today's shape; what payments write
    /// today is their current version's (see `oxcart_events::evolution`).
    #[test]
    fn stored_payloads_of_every_version_read_as_today() {
        let order_id = Uuid::from_u128(1);
        let cause = RecordedEvent {
            position: 1,
            version: 1,
            event: NewEvent {
                event_id: Uuid::from_u128(9),
                event_type: "order.created".into(),
                schema_version: 1,
                aggregate_type: "order".into(),
                aggregate_id: order_id,
                user_id: None,
                timestamp: chrono::DateTime::UNIX_EPOCH,
                data: json!({}),
                metadata: Metadata::default(),
            },
        };
        let row = Row {
            status: PaymentStatus::Succeeded,
            amount: 2900,
            currency: "EUR".into(),
            token: Some("tok_success".into()),
            provider_reference: Some("ch_1".into()),
            refunded: 0,
            refunds: 0,
        };
        let example = |event_type, detail: (&str, &str)| {
            let event = payment_event(
                &cause,
                event_type,
                order_id,
                &row,
                (detail.0, detail.1.to_owned()),
            );
            (event_type, event.data)
        };
        oxcart_test_util::evolution::check_fixtures(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events"),
            "payment.",
            &[
                example(payment::SUCCEEDED, ("providerReference", "ch_1")),
                example(payment::FAILED, ("reason", "card_declined")),
                (
                    payment::REFUNDED,
                    refund_event(
                        &cause,
                        order_id,
                        &RefundMade {
                            refund_id: Uuid::from_u128(7),
                            amount: 500,
                            currency: "EUR".into(),
                            source: Source::Request,
                            reason: "arrived damaged".into(),
                            reference: "re_1".into(),
                        },
                    )
                    .data,
                ),
            ],
            |_, data| {
                // What the order saga and analytics read of every payment event.
                match (data["orderId"].as_str(), data["amount"].as_i64()) {
                    (Some(_), Some(_)) => Ok(()),
                    _ => Err("no orderId or amount".to_owned()),
                }
            },
        );
    }
}
