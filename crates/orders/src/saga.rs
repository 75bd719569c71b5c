//! The orders service's part in the saga: it listens for the catalog's and payments'
//! replies and moves each order on.
//!
//! ```text
//! stock.rejected    ─▶ order.cancelled (out of stock)
//! payment.succeeded ─▶ order.paid
//! payment.failed    ─▶ order.payment_failed   (the catalog then releases the stock)
//! ```

use async_trait::async_trait;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_events::types::{payment, stock};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{Order, OrderEvent, OrderPaid, OrderPaymentFailed};
use crate::{Orders, Reaction};

pub const GROUP: &str = "order-service";

/// Who cancels an order the saga cancels: nobody in particular.
pub const SYSTEM: Uuid = Uuid::nil();

/// What the orders service reads of the replies (a tolerant reader).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    order_id: Uuid,
    #[serde(default)]
    payment_id: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

pub struct OrderSaga {
    orders: Orders,
}

impl OrderSaga {
    pub fn new(orders: Orders) -> Self {
        Self { orders }
    }
}

#[async_trait]
impl Handler for OrderSaga {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::CATALOG, topics::PAYMENTS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.handle_batch(&[event]).await
    }

    /// Every reply in the batch is one append to the orders they concern, one commit.
    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let reactions = events
            .iter()
            .filter_map(|event| reaction(event).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        if !reactions.is_empty() {
            self.orders.react_all(&reactions).await?;
        }
        Ok(())
    }
}

/// What a reply means for its order; `None` for the events the saga passes over.
fn reaction(event: &RecordedEvent) -> Result<Option<Reaction<'_>>, BoxError> {
    let kind = event.event.event_type.as_str();
    if !matches!(kind, stock::REJECTED | payment::SUCCEEDED | payment::FAILED) {
        return Ok(None);
    }
    let reply: Reply = serde_json::from_value(event.event.data.clone())?;
    let reason = reply.reason.clone().unwrap_or_else(|| kind.to_owned());
    let order_id = reply.order_id;
    let decide = move |order: &Order| match kind {
        stock::REJECTED => order.cancel(SYSTEM, Some(reason.clone())),
        payment::SUCCEEDED => order.decide(OrderEvent::Paid(OrderPaid {
            payment_id: reply.payment_id.clone().unwrap_or_default(),
            amount: reply.amount.unwrap_or(order.total_amount),
        })),
        _ => order.decide(OrderEvent::PaymentFailed(OrderPaymentFailed {
            reason: reason.clone(),
        })),
    };
    Ok(Some(Reaction {
        cause: event,
        order_id,
        decide: Box::new(decide),
    }))
}
