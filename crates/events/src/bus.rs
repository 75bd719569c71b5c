//! The bus port: how consumer groups receive events, and the embedded-log adapter.
//!
//! A consumer group has one durable position per topic set. The bus delivers events at
//! least once: what a group has not committed is delivered again after a restart, so a
//! group commits only after its handler has finished with an event. Events of one
//! aggregate arrive in the order they were appended (Kafka keeps that per partition, keyed
//! by aggregate id; the embedded log keeps one global order, which is stronger).
//!
//! In the all-in-one the log *is* the event store's table: the append that commits a state
//! change is also the publish, so there is nothing between them that a crash could lose.
//! The [`LogBus`] reads that table from each group's position and sleeps on the store's
//! doorbell between appends, with a slow poll only as a safety net for writers in other
//! processes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::envelope::{Position, RecordedEvent};
use crate::store::{BoxError, Error, EventStore};

/// The topics of the brief, each fed by one kind of aggregate.
pub mod topics {
    pub const ORDERS: &str = "orders";
    pub const PAYMENTS: &str = "payments";
    pub const CATALOG: &str = "catalog";
    pub const USERS: &str = "users";

    /// Every topic.
    pub const ALL: [&str; 4] = [ORDERS, PAYMENTS, CATALOG, USERS];

    /// Where a topic's dead letters go: `orders.dlq`.
    pub fn dead_letter(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// The topic an aggregate type's events are published to (Kafka key: the aggregate id).
pub fn topic_of(aggregate_type: &str) -> &'static str {
    match aggregate_type {
        "order" => topics::ORDERS,
        "payment" => topics::PAYMENTS,
        "user" => topics::USERS,
        // Products and stock reservations both belong to the catalog service.
        _ => topics::CATALOG,
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Joins consumer group `group` on `topics`, resuming from its committed position.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&'static str],
    ) -> Result<Box<dyn Subscription>, Error>;
}

/// One member of a consumer group.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` events after the last one delivered, oldest first. Waits for new
    /// events up to `wait`, then answers with what there is (possibly nothing).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, Error>;

    /// Records that the group has finished with every delivered event up to and including
    /// `through`; after a clean stop, delivery resumes after it. After a crash an adapter
    /// may deliver again what was recorded in its last moments (Kafka commits what was
    /// recorded every half second), never less: consumers de-duplicate by event id.
    async fn commit(&mut self, through: &RecordedEvent) -> Result<(), Error>;

    /// How far the group's committed position is behind the log, in events.
    async fn lag(&mut self) -> Result<u64, Error>;
}

/// Durable named positions in the log.
#[async_trait]
pub trait Checkpoints: Send + Sync + 'static {
    async fn load(&self, name: &str) -> Result<Position, BoxError>;
    async fn save(&self, name: &str, position: Position) -> Result<(), BoxError>;
}

/// The embedded log: the event store itself, followed by position.
pub struct LogBus {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn Checkpoints>,
    safety_poll: Duration,
}

impl LogBus {
    pub fn new(store: Arc<dyn EventStore>, checkpoints: Arc<dyn Checkpoints>) -> Self {
        Self {
            store,
            checkpoints,
            safety_poll: SAFETY_POLL,
        }
    }

    /// How often a waiting poll re-reads the log without a doorbell (default 500 ms).
    pub fn with_safety_poll(mut self, interval: Duration) -> Self {
        self.safety_poll = interval;
        self
    }
}

#[async_trait]
impl Bus for LogBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&'static str],
    ) -> Result<Box<dyn Subscription>, Error> {
        let committed = self
            .checkpoints
            .load(group)
            .await
            .map_err(Error::Unavailable)?;
        Ok(Box::new(LogSubscription {
            group: group.to_owned(),
            topics: topics.to_vec(),
            store: Arc::clone(&self.store),
            checkpoints: Arc::clone(&self.checkpoints),
            doorbell: self.store.subscribe(),
            safety_poll: self.safety_poll,
            read: committed,
            owed: None,
            committed,
        }))
    }
}

struct LogSubscription {
    group: String,
    topics: Vec<&'static str>,
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn Checkpoints>,
    doorbell: watch::Receiver<Position>,
    safety_poll: Duration,
    /// The position of the last event read (delivered or skipped as another topic's).
    read: Position,
    /// The last event handed to the consumer, while it has not committed through it.
    owed: Option<Position>,
    committed: Position,
}

/// How many events one read of the log takes in, whichever topics they are on.
const READ_BATCH: usize = 512;
/// The safety-net poll for appends made by other processes, which ring no doorbell here.
const SAFETY_POLL: Duration = Duration::from_millis(500);

impl LogSubscription {
    async fn save(&mut self, position: Position) -> Result<(), Error> {
        self.checkpoints
            .save(&self.group, position)
            .await
            .map_err(Error::Unavailable)?;
        self.committed = position;
        Ok(())
    }
}

#[async_trait]
impl Subscription for LogSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.doorbell.borrow_and_update();
            let events = self
                .store
                .read_all(self.read, READ_BATCH.min(max.max(1) * 4))
                .await?;
            let mut delivered = Vec::new();
            for event in &events {
                if delivered.len() == max {
                    break;
                }
                self.read = event.position;
                if self.topics.contains(&topic_of(&event.event.aggregate_type)) {
                    self.owed = Some(event.position);
                    delivered.push(event.clone());
                }
            }
            if !delivered.is_empty() {
                return Ok(delivered);
            }
            // Nothing for this group: what was read belongs to other topics. Skip it for
            // good once everything the group was given is committed, so that its lag
            // says what it really owes.
            // (Positions compared for equality, not order: on PostgreSQL the log runs in
            // commit order, and a later event can have a lower position.)
            if self.read != self.committed && self.owed.is_none() {
                let read = self.read;
                self.save(read).await?;
            }
            if !events.is_empty() {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = self.doorbell.changed() => {}
                () = tokio::time::sleep(self.safety_poll.min(deadline - now)) => {}
            }
        }
    }

    async fn commit(&mut self, through: &RecordedEvent) -> Result<(), Error> {
        self.save(through.position).await?;
        if self.owed == Some(through.position) {
            self.owed = None;
        }
        Ok(())
    }

    async fn lag(&mut self) -> Result<u64, Error> {
        let head = self.store.head().await?;
        Ok(u64::try_from(head - self.committed).unwrap_or(0))
    }
}
