//! Every event type oxcart publishes, named once, grouped by the service that produces it.
//!
//! Services never depend on one another for their contracts (they talk only through
//! events), so the names live here, beside the [topics](crate::bus::topics) they travel
//! on. The producer writes them and each consumer matches on them (constants work as
//! `match` patterns): a rename is one edit, and a misspelt name does not compile instead
//! of silently matching nothing.

/// The orders service: the order aggregate's stream, on the `orders` topic.
pub mod order {
    pub const CREATED: &str = "order.created";
    pub const PAID: &str = "order.paid";
    pub const PAYMENT_FAILED: &str = "order.payment_failed";
    pub const CANCELLED: &str = "order.cancelled";
    pub const SHIPPED: &str = "order.shipped";
    pub const DELIVERED: &str = "order.delivered";
}

/// The catalog service's stock reservations, on the `catalog` topic.
pub mod stock {
    pub const RESERVED: &str = "stock.reserved";
    pub const REJECTED: &str = "stock.rejected";
    pub const RELEASED: &str = "stock.released";
}

/// The payments service, on the `payments` topic.
pub mod payment {
    pub const SUCCEEDED: &str = "payment.succeeded";
    pub const FAILED: &str = "payment.failed";
    pub const REFUNDED: &str = "payment.refunded";
}
