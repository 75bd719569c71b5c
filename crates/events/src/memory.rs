//! In-memory adapters (event store, checkpoints, dead letters): for tests and
//! experiments. They pass the same contract suites as the durable adapters, but keep
//! nothing across restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use chrono::Utc;

use crate::bus::Checkpoints;
use crate::consumer::{DeadLetter, DeadLetters, count_by_group};
use crate::envelope::{NewEvent, Position, RecordedEvent};
use crate::store::{Appended, BoxError, Error, EventStore, StreamAppend, prepare_append};

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
        lock(&self.inner)
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
        let one = StreamAppend {
            aggregate_id,
            expected_version,
            events,
        };
        let appended = self.append_many(vec![one]).await?;
        Ok(appended[0])
    }

    /// All or none: every stream's version is checked before any event goes in.
    async fn append_many(&self, mut appends: Vec<StreamAppend>) -> Result<Vec<Appended>, Error> {
        let span = prepare_append(&mut appends)?;
        let _entered = span.enter();
        let appended = {
            let mut inner = self.lock();
            let mut versions: HashMap<Uuid, u64> = HashMap::new();
            for each in &appends {
                let id = each.aggregate_id;
                let actual = *versions
                    .entry(id)
                    .or_insert_with(|| inner.streams.get(&id).map_or(0, |s| s.len() as u64));
                if actual != each.expected_version {
                    return Err(Error::Conflict {
                        aggregate_id: id,
                        expected: each.expected_version,
                        actual,
                    });
                }
                versions.insert(id, actual + each.events.len() as u64);
            }
            let mut appended = Vec::with_capacity(appends.len());
            for each in appends {
                let mut version = each.expected_version;
                let mut position = inner.log.len() as Position;
                for event in each.events {
                    version += 1;
                    position += 1;
                    let index = inner.log.len();
                    inner.log.push(RecordedEvent {
                        position,
                        version,
                        event,
                    });
                    inner
                        .streams
                        .entry(each.aggregate_id)
                        .or_default()
                        .push(index);
                }
                appended.push(Appended { version, position });
            }
            appended
        };
        if let Some(last) = appended.iter().map(|one| one.position).max() {
            self.head.send_replace(last);
        }
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

/// Named positions kept in memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints(Mutex<HashMap<String, Position>>);

#[async_trait]
impl Checkpoints for MemoryCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, BoxError> {
        Ok(lock(&self.0).get(name).copied().unwrap_or(0))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), BoxError> {
        lock(&self.0).insert(name.to_owned(), position);
        Ok(())
    }
}

/// Dead letters kept in memory.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters(Mutex<Vec<DeadLetter>>);

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn park(
        &self,
        group: &str,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<Uuid, BoxError> {
        let mut letters = lock(&self.0);
        if let Some(letter) = letters
            .iter_mut()
            .find(|l| l.group == group && l.event.event.event_id == event.event.event_id)
        {
            letter.error = error.to_owned();
            letter.attempts += attempts;
            letter.resolved_at = None;
            return Ok(letter.id);
        }
        let id = Uuid::now_v7();
        letters.push(DeadLetter {
            id,
            group: group.to_owned(),
            event: event.clone(),
            error: error.to_owned(),
            attempts,
            parked_at: Utc::now(),
            resolved_at: None,
        });
        Ok(id)
    }

    async fn list(
        &self,
        group: Option<&str>,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, BoxError> {
        Ok(lock(&self.0)
            .iter()
            .filter(|l| group.is_none_or(|g| g == l.group))
            .filter(|l| include_resolved || l.resolved_at.is_none())
            .cloned()
            .collect())
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, BoxError> {
        Ok(lock(&self.0).iter().find(|l| l.id == id).cloned())
    }

    async fn resolve(&self, id: Uuid) -> Result<(), BoxError> {
        if let Some(letter) = lock(&self.0).iter_mut().find(|l| l.id == id) {
            letter.resolved_at = Some(Utc::now());
        }
        Ok(())
    }

    async fn record_failure(&self, id: Uuid, error: &str) -> Result<(), BoxError> {
        if let Some(letter) = lock(&self.0).iter_mut().find(|l| l.id == id) {
            letter.attempts += 1;
            error.clone_into(&mut letter.error);
        }
        Ok(())
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, BoxError> {
        Ok(count_by_group(
            lock(&self.0)
                .iter()
                .filter(|l| l.resolved_at.is_none())
                .map(|l| l.group.as_str()),
        ))
    }
}

// Nothing in the critical sections here can panic half way through a change, so a
// poisoned lock still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
