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
use crate::store::{Appended, Error, StreamAppend};

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

    /// Appends to several streams inside the caller's transaction, each as
    /// [`Outbox::append_in`] would, in order; on an error the caller rolls the
    /// transaction back, as some of the streams may be appended to. A store may write
    /// them all in one statement.
    async fn append_all_in(
        &self,
        conn: &mut AnyConnection,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, Error> {
        let mut appended = Vec::with_capacity(appends.len());
        for each in appends {
            appended.push(
                self.append_in(conn, each.aggregate_id, each.expected_version, each.events)
                    .await?,
            );
        }
        Ok(appended)
    }

    /// Tells subscribers in this process that a transaction holding appends committed.
    fn committed(&self, position: Position);
}
