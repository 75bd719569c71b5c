//! The storage adapters that are the same on every SQL backend.
//!
//! - [`SqlEventStore`]: the event store on the `events` table. In the all-in-one it is
//!   also the embedded event log, and it is the outbox that services append to in their
//!   own transactions; with Kafka, the relay publishes from it.
//! - [`DbCheckpoints`] and [`DbDeadLetters`]: consumer-group positions and parked events.
//! - [`InTransaction`]: the handler of a consumer group whose effects are all rows
//!   ([`Apply`]), applying each polled batch in one transaction.
//!
//! The backend crates (`oxcart-sqlite`, `oxcart-postgres`) open the connections and own
//! the schema; what differs between the engines in here is one statement, the lock that
//! makes PostgreSQL hand out log positions in commit order.

mod consumers;
mod event_store;
mod transactional;

pub use consumers::{DbCheckpoints, DbDeadLetters};
pub use event_store::SqlEventStore;
pub use transactional::{Apply, InTransaction, apply_each};
