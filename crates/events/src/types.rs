//! Every event type oxcart publishes, named once, grouped by the service that produces it,
//! and its contract ([`CONTRACTS`]): the schema version producers write, and the steps
//! that bring an older stored payload up to it (see [`crate::evolution`]).
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
    /// An admin asked for (part of) a paid order's money back; payments carries it out.
    pub const REFUND_REQUESTED: &str = "order.refund_requested";
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

use crate::NewEvent;
use crate::evolution::{Contract, MissingStep, Upcaster};

/// Every event type's contract. To change a payload in a way readers would notice, raise
/// its type's `version` here, add the step from the old version to `upcasters`, and a
/// fixture of the new version in the producer's `fixtures/events/<type>/`.
pub const CONTRACTS: &[Contract] = &[
    // v2: each line carries its product's `taxClass`, and the order the customer's tax
    // id (`customerTaxId`, null when not given). Every v1 line was `standard`, and no
    // v1 order had a tax id.
    Contract {
        event_type: order::CREATED,
        version: 2,
        upcasters: &[Upcaster {
            from: 1,
            step: |mut data| {
                if let Some(items) = data["items"].as_array_mut() {
                    for item in items {
                        item["taxClass"] = "standard".into();
                    }
                }
                data["customerTaxId"] = serde_json::Value::Null;
                data
            },
        }],
    },
    Contract::first(order::PAID),
    Contract::first(order::PAYMENT_FAILED),
    // v2: a cancelled order may have been partly refunded before; `refundedBefore` says
    // how much, and the cancellation refunds the rest. None could be in v1.
    Contract {
        event_type: order::CANCELLED,
        version: 2,
        upcasters: &[Upcaster {
            from: 1,
            step: |mut data| {
                data["refundedBefore"] = 0.into();
                data
            },
        }],
    },
    Contract::first(order::SHIPPED),
    Contract::first(order::DELIVERED),
    Contract::first(order::REFUND_REQUESTED),
    Contract::first(stock::RESERVED),
    Contract::first(stock::REJECTED),
    Contract::first(stock::RELEASED),
    Contract::first(payment::SUCCEEDED),
    Contract::first(payment::FAILED),
    // v2: refunds may be partial and requested apart from a cancellation. `amount` is
    // what this refund gave back; `refundId`, `source` and `reason` say which refund.
    // Every v1 refund was a cancellation's, of the whole payment, with the order's id as
    // its refund's.
    Contract {
        event_type: payment::REFUNDED,
        version: 2,
        upcasters: &[Upcaster {
            from: 1,
            step: |mut data| {
                data["refundId"] = data["orderId"].clone();
                data["source"] = "cancellation".into();
                data["reason"] = "order cancelled".into();
                data
            },
        }],
    },
];

/// The schema version producers write for `event_type` (1 for a type with no contract).
pub fn version(event_type: &str) -> u32 {
    CONTRACTS
        .iter()
        .find(|c| c.event_type == event_type)
        .map_or(1, |c| c.version)
}

/// `event` in its type's current shape: what every store and wire decoder calls on what
/// it reads.
pub fn to_current(event: &mut NewEvent) -> Result<(), MissingStep> {
    crate::evolution::to_current(event, CONTRACTS)
}
