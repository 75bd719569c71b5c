//! The storage adapters that are the same on every SQL backend.
//!
//! - [`SqlEventStore`]: the event store on the `events` table. In the all-in-one it is
//!   also the embedded event log, and it is the outbox that services append to in their
//!   own transactions; with Kafka, the relay publishes from it.
//! - [`DbCheckpoints`] and [`DbDeadLetters`]: consumer-group positions and parked events.
//! - [`housekeeping`]: the chores that prune the inbox and resolved dead letters.
//! - [`InTransaction`]: the handler of a consumer group whose effects are all rows
//!   ([`Apply`]), applying each polled batch in one transaction.
//!
//! The backend crates (`oxcart-sqlite`, `oxcart-postgres`) open the connections and
//! compose the schema; this crate owns the log's and the consumers' tables (its
//! `migrations/`).
//!
//! # The log in commit order
//! `(aggregate_id, version)` is unique and triggers make the `events` table append-only.
//! Readers follow the log by a cursor, the last `position` they read, so nothing may become
//! visible before a place they have passed. SQLite's single writer assigns positions in
//! commit order for free. On PostgreSQL a sequence hands out numbers at insert time and
//! appends commit concurrently, so each event records its transaction id (`tx xid8`,
//! migration `1004_commit_order.sql`), and `read_all` returns the log in `(tx, position)`
//! order up to the oldest transaction of this database still running, taken from the
//! statement's own snapshot: every transaction below it has ended. Appends do not wait for
//! each other (they used to take one advisory lock until their commit, which capped the
//! whole system at one commit at a time). The tests show eight concurrent writers and a
//! follower, and two transactions committing out of the order they began in.
//!
//! An append is one statement an event: the version check is part of the
//! `INSERT … SELECT … WHERE` (version n only if n − 1 is there, the unique
//! `(aggregate_id, version)` turning away a taken n), and only a conflict reads the stream's
//! version. `append_many` appends to several streams in one transaction, all or none, and
//! `Outbox::append_all_in` any number of streams' events in one statement (version n of a
//! stream goes in only if n − 1 is in the table or earlier in the same statement).
//!
//! # Batches
//! [`InTransaction`] applies a polled batch in one transaction, each event claimed (the
//! `processed_events` inbox, through `oxcart_db::claim_fresh`) and applied in log order,
//! one commit for all. An [`Apply`] may write the batch set-wise (`Apply::apply_all`):
//! analytics and the stock reservations read and write a batch in a few multi-row
//! statements whatever its size, as do the read-model projection and the invoices.

mod consumers;
mod event_store;
pub mod housekeeping;
mod transactional;

pub use consumers::{DbCheckpoints, DbDeadLetters};
pub use event_store::SqlEventStore;
pub use transactional::{Apply, InTransaction, apply_each};
