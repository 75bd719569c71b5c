//! The payment step of the serverless mode (consumer group `payment-service`), event
//! sourced: the payment's own stream is its only record.
//!
//! ```text
//! order.created ─▶ charge ─▶ payment.succeeded | payment.failed   (version 1 of the payment's stream)
//! ```
//!
//! The serverless mode has no catalog worker, so nothing reserves stock: an order is
//! charged as soon as it is placed. Exactly-once in effect comes from two keys:
//! - the provider's idempotency key is the order id, so a redelivered `order.created`
//!   (after a crash between the charge and the append, or a visibility timeout) is
//!   answered with the first answer and moves no money;
//! - the outcome is appended at version 0 of the payment's stream, whose id is derived
//!   from the order's, so a second append is refused (`Conflict`) and only one outcome
//!   ever reaches the order.

use std::sync::Arc;

use async_trait::async_trait;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_events::types::order;
use oxcart_events::{EventStore, RecordedEvent};

use crate::domain::{Charged, OrderCreated, Row, charge_order};
use crate::payment_id;
use crate::provider::PaymentProvider;
use crate::saga::GROUP;

pub struct EventSourcedPayments {
    store: Arc<dyn EventStore>,
    provider: Arc<dyn PaymentProvider>,
}

impl EventSourcedPayments {
    pub fn new(store: Arc<dyn EventStore>, provider: Arc<dyn PaymentProvider>) -> Self {
        Self { store, provider }
    }

    #[tracing::instrument(name = "charge", skip_all, fields(order.id = %cause.event.aggregate_id))]
    async fn charge(&self, cause: &RecordedEvent) -> Result<(), BoxError> {
        let order_id = cause.event.aggregate_id;
        let id = payment_id(order_id);
        // Already decided: a redelivery. (Without this read the provider would answer the
        // repeated key and the append would be refused; the read saves both calls.)
        if !self.store.read_stream(id).await?.is_empty() {
            return Ok(());
        }
        let order: OrderCreated = serde_json::from_value(cause.event.data.clone())?;
        let payment = Row::pending(&order);
        let Charged {
            status,
            reason,
            event,
            ..
        } = charge_order(self.provider.as_ref(), cause, order_id, &payment).await?;
        // No webhook reaches the serverless mode: only providers that answer at once.
        let event = event.ok_or("the provider answers this charge later, by webhook, which the serverless mode does not receive")?;
        match self.store.append(id, 0, vec![event]).await {
            Ok(_) => {
                tracing::info!(order_id = %order_id, outcome = status.as_str(), reason = reason.as_deref(), "charge");
                Ok(())
            }
            // Another delivery of the same event decided first, with the same answer.
            Err(oxcart_events::Error::Conflict { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl Handler for EventSourcedPayments {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        match event.event.event_type.as_str() {
            order::CREATED => self.charge(event).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;
    use oxcart_events::memory::MemoryEventStore;
    use oxcart_events::{Metadata, NewEvent};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::provider::{Charge, ChargeOutcome, Refund};

    /// Approves every charge whose token is `tok_success`, and counts the charges made.
    #[derive(Default)]
    struct CountingProvider(AtomicUsize);

    #[async_trait]
    impl PaymentProvider for CountingProvider {
        async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(match charge.token.as_deref() {
                Some("tok_success") => ChargeOutcome::Approved {
                    reference: format!("ch_{}", charge.idempotency_key),
                },
                _ => ChargeOutcome::Declined {
                    code: "card_declined".into(),
                },
            })
        }

        async fn refund(&self, _refund: &Refund) -> Result<String, BoxError> {
            Err("no refunds here".into())
        }
    }

    async fn placed(store: &MemoryEventStore, token: &str) -> RecordedEvent {
        let order_id = Uuid::now_v7();
        let event = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "order.created".into(),
            schema_version: 1,
            aggregate_type: "order".into(),
            aggregate_id: order_id,
            user_id: Some(Uuid::now_v7()),
            timestamp: Utc::now(),
            data: json!({ "customerId": Uuid::now_v7(), "totalAmount": 2500, "currency": "EUR",
                          "paymentToken": token }),
            metadata: Metadata::default(),
        };
        store.append(order_id, 0, vec![event]).await.unwrap();
        store.read_stream(order_id).await.unwrap().remove(0)
    }

    #[tokio::test]
    async fn a_new_order_is_charged_and_the_outcome_opens_the_payment_stream() {
        let store = Arc::new(MemoryEventStore::new());
        let provider = Arc::new(CountingProvider::default());
        let payments = EventSourcedPayments::new(store.clone(), provider.clone());
        for (token, outcome) in [
            ("tok_success", "payment.succeeded"),
            ("tok_declined", "payment.failed"),
        ] {
            let created = placed(&store, token).await;
            payments.handle(&created).await.unwrap();
            let stream = store
                .read_stream(payment_id(created.event.aggregate_id))
                .await
                .unwrap();
            assert_eq!(stream.len(), 1);
            assert_eq!(stream[0].event.event_type, outcome);
            assert_eq!(stream[0].event.data["amount"], 2500);
            assert_eq!(
                stream[0].event.metadata.causation_id,
                created.event.event_id.to_string()
            );
        }
    }

    #[tokio::test]
    async fn a_redelivered_order_is_neither_charged_nor_recorded_again() {
        let store = Arc::new(MemoryEventStore::new());
        let provider = Arc::new(CountingProvider::default());
        let payments = EventSourcedPayments::new(store.clone(), provider.clone());
        let created = placed(&store, "tok_success").await;
        payments.handle(&created).await.unwrap();
        payments.handle(&created).await.unwrap();
        assert_eq!(provider.0.load(Ordering::SeqCst), 1);
        // Two deliveries at once: both may reach the provider (which answers a repeated
        // key alike), but only one outcome is recorded.
        let created = placed(&store, "tok_success").await;
        let (a, b) = tokio::join!(payments.handle(&created), payments.handle(&created));
        a.unwrap();
        b.unwrap();
        let stream = store
            .read_stream(payment_id(created.event.aggregate_id))
            .await
            .unwrap();
        assert_eq!(stream.len(), 1);
    }

    #[tokio::test]
    async fn other_order_events_are_not_charged() {
        let store = Arc::new(MemoryEventStore::new());
        let provider = Arc::new(CountingProvider::default());
        let payments = EventSourcedPayments::new(store.clone(), provider.clone());
        let mut created = placed(&store, "tok_success").await;
        created.event.event_type = "order.cancelled".into();
        payments.handle(&created).await.unwrap();
        assert_eq!(provider.0.load(Ordering::SeqCst), 0);
    }
}
