//! The event store port.
//!
//! Streams are append-only, one per aggregate, versioned from 1 without gaps. Every
//! append names the version it expects the stream to be at; if another writer got there
//! first the append fails with [`Error::Conflict`] and writes nothing, which is how two
//! concurrent commands on one order can never both succeed. All events also share one
//! global order, the position, which projections and consumers follow.

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, RecordedEvent};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream {aggregate_id} is at version {actual}, not the expected {expected}")]
    Conflict {
        aggregate_id: Uuid,
        expected: u64,
        actual: u64,
    },
    #[error("the events do not all belong to stream {0}")]
    WrongStream(Uuid),
    #[error("the event store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("the event store failed")]
    Backend(#[source] BoxError),
    #[error("the event at position {position} cannot be decoded")]
    Corrupt {
        position: Position,
        #[source]
        source: BoxError,
    },
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append.
    pub version: u64,
    /// The global position of the last event appended.
    pub position: Position,
}

/// One stream's part of [`EventStore::append_many`].
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub aggregate_id: Uuid,
    /// As [`EventStore::append`] takes it.
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to the stream of `aggregate_id`, all or nothing, provided the
    /// stream is at `expected_version` (0: the stream must not exist yet).
    async fn append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error>;

    /// Appends to several streams, each as [`append`](Self::append) would, in one commit
    /// where the store has transactions: the SQL and in-memory stores append them all or
    /// none. This default appends stream by stream and stops at the first failure, so a
    /// caller must be able to find which stood (a saga re-deciding from its streams does).
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, Error> {
        let mut appended = Vec::with_capacity(appends.len());
        for each in appends {
            appended.push(
                self.append(each.aggregate_id, each.expected_version, each.events)
                    .await?,
            );
        }
        Ok(appended)
    }

    /// The whole stream of `aggregate_id`, oldest first; empty if there is none.
    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<RecordedEvent>, Error>;

    /// Up to `limit` events after `after`, in position order.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error>;

    /// The position of the newest event (0 when empty).
    async fn head(&self) -> Result<Position, Error>;

    /// Changes whenever this store appends, to wake readers waiting for new events.
    /// It is a doorbell, not a delivery: readers always re-read from their own position.
    fn subscribe(&self) -> watch::Receiver<Position>;
}

/// Checks the events an append was given all belong to its stream.
pub fn check_stream(aggregate_id: Uuid, events: &[NewEvent]) -> Result<(), Error> {
    if events.iter().all(|e| e.aggregate_id == aggregate_id) {
        Ok(())
    } else {
        Err(Error::WrongStream(aggregate_id))
    }
}

/// What every store does before it writes an append: checks each stream's events are its
/// own, and stamps them with the producer span of their append (their consumers' parent)
/// unless the caller stamped them with a span of its own already. Returns the span the
/// write runs in: the one stream's append span, or, for several streams (or events the
/// caller stamped), a span of its own, named apart so that no stream's append shows twice.
pub fn prepare_append(appends: &mut [StreamAppend]) -> Result<tracing::Span, Error> {
    let mut stamped_here = None;
    for each in appends.iter_mut() {
        check_stream(each.aggregate_id, &each.events)?;
        if each.events.iter().any(|e| e.metadata.traceparent.is_none()) {
            let span = crate::trace::append_span(&each.events);
            crate::trace::stamp(&span, &mut each.events);
            stamped_here = Some(span);
        }
    }
    Ok(match stamped_here {
        Some(span) if appends.len() == 1 => span,
        _ => tracing::info_span!("append streams", streams = appends.len()),
    })
}
