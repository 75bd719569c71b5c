//! Events: what they look like, where they are kept, and how read models follow them.
//!
//! # Layout
//! - [`envelope`]: the spec's event envelope (`eventId`, `eventType`, `orderId`,
//!   `timestamp`, `userId`, `data`, `metadata.correlationId`/`causationId`) plus the
//!   stream `version`, the global `position` and a `schemaVersion`.
//! - [`store`]: the `EventStore` port: append-only streams with optimistic concurrency and
//!   one global order. Adapters: [`memory`] here, SQLite in `oxcart-sqlite`.
//! - [`projection`]: runs a read model forward from a stored checkpoint.
//! - [`outbox`]: appends inside a service's own transaction (no dual write).
//! - [`bus`]: consumer groups on topics, and the embedded-log adapter [`bus::LogBus`].
//! - [`consumer`]: the runner every consumer group shares: retries, dead letters, metrics.
//! - [`chore`]: the housekeeping a service does in the background (pruning, settling).
//! - [`backoff`]: exponential backoff with jitter for anything that retries.
//! - [`trace`]: producer and consumer spans, and the trace context events carry.
//! - [`types`]: the name of every event type, grouped by the service that produces it,
//!   and its contract: the version of its payload and the steps from older ones.
//! - [`evolution`]: bringing a stored payload of an older version to the current shape.

pub mod backoff;
pub mod bus;
pub mod chore;
pub mod consumer;
pub mod envelope;
pub mod evolution;
pub mod memory;
pub mod outbox;
pub mod projection;
pub mod store;
pub mod trace;
pub mod types;

pub use envelope::{Metadata, NewEvent, Position, RecordedEvent};
pub use store::{Appended, Error, EventStore, StreamAppend};
