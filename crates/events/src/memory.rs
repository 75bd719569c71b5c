//! An in-memory event store: for tests and experiments. It passes the same contract
//! suite as the durable adapters, but keeps nothing across restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, RecordedEvent};
use crate::store::{Appended, Error, EventStore, check_stream};

#[derive(Debug)]
pub struct MemoryEventStore {
    inner: Mutex<Inner>,
    head: watch::Sender<Position>,
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<RecordedEvent>,
    streams: HashMap<Uuid, Vec<usize>>,
}

impl MemoryEventStore {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            head: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in the critical sections can panic half way through an append, so a
        // poisoned lock still guards a consistent log.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        check_stream(aggregate_id, &events)?;
        let appended = {
            let mut inner = self.lock();
            let actual = inner
                .streams
                .get(&aggregate_id)
                .map_or(0, |s| s.len() as u64);
            if actual != expected_version {
                return Err(Error::Conflict {
                    aggregate_id,
                    expected: expected_version,
                    actual,
                });
            }
            let mut version = actual;
            let mut position = inner.log.len() as Position;
            for event in events {
                version += 1;
                position += 1;
                let index = inner.log.len();
                inner.log.push(RecordedEvent {
                    position,
                    version,
                    event,
                });
                inner.streams.entry(aggregate_id).or_default().push(index);
            }
            Appended { version, position }
        };
        self.head.send_replace(appended.position);
        Ok(appended)
    }

    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<RecordedEvent>, Error> {
        let inner = self.lock();
        Ok(inner
            .streams
            .get(&aggregate_id)
            .map_or_else(Vec::new, |indexes| {
                indexes.iter().map(|&i| inner.log[i].clone()).collect()
            }))
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let inner = self.lock();
        let start = usize::try_from(after.max(0))
            .unwrap_or(usize::MAX)
            .min(inner.log.len());
        Ok(inner.log[start..].iter().take(limit).cloned().collect())
    }

    async fn head(&self) -> Result<Position, Error> {
        Ok(self.lock().log.len() as Position)
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
