//! The outbox: events appended inside the transaction of the state change they describe.
//!
//! A service that keeps its state in tables (the catalog's stock, the payments ledger)
//! appends its events through this port on the same connection, inside the same
//! transaction, as the rows it changes. Both commit or neither does, so there is no
//! moment at which the state has changed but the event is lost, or the reverse. The
//! events table is then read by the bus (the embedded log) or by a relay that copies it
//! to Kafka; either way the database transaction is the single point of truth.

use async_trait::async_trait;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::envelope::{NewEvent, Position};
use crate::store::{Appended, Error};

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Appends `events` to the stream of `aggregate_id` inside the caller's transaction,
    /// provided the stream is at `expected_version`.
    async fn append_in(
        &self,
        conn: &mut AnyConnection,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error>;

    /// Tells subscribers in this process that a transaction holding appends committed.
    fn committed(&self, position: Position);
}
