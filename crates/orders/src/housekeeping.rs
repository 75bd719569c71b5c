//! The order left unpaid: cancelled once `payment_timeout` has passed since it was
//! placed, so that its stock goes back on sale instead of being held forever by a
//! payment that never settles.
//!
//! The cancellation is an ordinary `order.cancelled` (reason "not paid within …", by the
//! system), so the rest follows as for any cancellation: the catalog releases the stock,
//! payments cancels the pending payment (or refunds one that went through meanwhile),
//! notifications writes to the customer.

use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::chore::Chore;
use oxcart_events::store::BoxError;
use oxcart_platform::http::RequestContext;
use uuid::Uuid;

use crate::read_model::OrderReadModel;
use crate::service::Orders;

/// Orders one round cancels at most; more wait for the next round.
const PER_ROUND: i64 = 200;

pub struct UnpaidOrders {
    pub orders: Orders,
    pub read_model: OrderReadModel,
    pub timeout: Duration,
}

impl UnpaidOrders {
    /// The reason the cancellation gives, which the customer's e-mail quotes.
    pub fn reason(&self) -> String {
        format!(
            "not paid within {}",
            humantime::format_duration(self.timeout)
        )
    }
}

#[async_trait]
impl Chore for UnpaidOrders {
    fn name(&self) -> &'static str {
        "unpaid_orders"
    }

    async fn run(&self) -> Result<u64, BoxError> {
        let before = chrono::Utc::now() - self.timeout;
        let waiting = self.read_model.awaiting_payment(before, PER_ROUND).await?;
        let reason = self.reason();
        let mut cancelled = 0;
        for id in waiting {
            let correlation = Uuid::now_v7().to_string();
            let context = RequestContext {
                request_id: format!("housekeeping-{correlation}"),
                correlation_id: correlation,
            };
            if self.orders.cancel_unpaid(id, &reason, &context).await? {
                tracing::info!(order_id = %id, reason = %reason, "unpaid order cancelled");
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }
}
