//! The bus port on Kafka consumer groups.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::{Bus, Subscription};
use oxcart_events::store::Error;
use oxcart_platform::telemetry::context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::KafkaConfig;

/// Consumer groups on Kafka: each `subscribe` joins the group as one more member.
pub struct KafkaBus {
    config: KafkaConfig,
}

impl KafkaBus {
    pub fn new(config: KafkaConfig) -> Self {
        Self { config }
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable(Box::new(error))
}

#[async_trait]
impl Bus for KafkaBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&'static str],
    ) -> Result<Box<dyn Subscription>, Error> {
        let consumer: StreamConsumer = self
            .config
            .client()
            .set("group.id", self.config.name(group))
            // Offsets move only when the runner commits an event it has finished with.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts from the beginning of the log, as on the embedded log.
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "30000")
            // How long the broker may hold a fetch that finds nothing. Kafka answers as
            // soon as there is data, so a short wait only costs idle requests, and a
            // broker answers one connection's requests in order: whatever the client
            // sends a partition's leader after a fetch waits behind it.
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(unavailable)?;
        // The group's offsets and the topics' watermarks are asked for on connections of
        // their own: a broker answers a connection's requests one at a time, and the
        // consumer's connections wait in fetches, so a lag measured over them would
        // queue behind every one (and the runner with it).
        let observer: BaseConsumer = self
            .config
            .client()
            .set("group.id", self.config.name(group))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(unavailable)?;
        let names: Vec<String> = topics.iter().map(|t| self.config.name(t)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(unavailable)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
            observer: Arc::new(observer),
            topics: names.iter().map(|t| (*t).to_owned()).collect(),
            delivered: VecDeque::new(),
            lag: None,
            measuring: None,
        }))
    }
}

/// Where a delivered message sits, to commit it later.
struct Delivered {
    event_id: Option<Uuid>,
    topic: String,
    partition: i32,
    offset: i64,
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
    /// Never joins the group: it only reads the group's committed offsets and the
    /// watermarks, for the lag.
    observer: Arc<BaseConsumer>,
    topics: Vec<String>,
    /// Delivered and not yet committed, in delivery order.
    delivered: VecDeque<Delivered>,
    /// The group's lag as last measured, and the measurement under way.
    lag: Option<u64>,
    measuring: Option<JoinHandle<Result<u64, KafkaError>>>,
}

async fn joined<T>(task: JoinHandle<Result<T, KafkaError>>) -> Result<T, Error> {
    task.await
        .map_err(|e| Error::Backend(Box::new(e)))?
        .map_err(unavailable)
}

/// How long the coordinator waits for a silent member before it rebalances without it.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The group's lag over every partition of `topics`: what it has not committed.
fn group_lag(consumer: &BaseConsumer, topics: &[String]) -> Result<u64, KafkaError> {
    // Every partition of the group's topics, not just this member's: the group's lag,
    // known before the member has joined.
    let timeout = Duration::from_secs(5);
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                partitions.add_partition(found.name(), partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut lag = 0;
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let from = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        lag += u64::try_from(high - from).unwrap_or(0);
    }
    Ok(lag)
}

impl KafkaSubscription {
    /// Runs a blocking call on the group member off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&StreamConsumer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, Error> {
        let consumer = Arc::clone(&self.consumer);
        joined(tokio::task::spawn_blocking(move || call(&consumer))).await
    }

    /// Starts measuring the group's lag on the observer.
    fn measure(&self) -> JoinHandle<Result<u64, KafkaError>> {
        let (observer, topics) = (Arc::clone(&self.observer), self.topics.clone());
        tokio::task::spawn_blocking(move || group_lag(&observer, &topics))
    }
}

/// A message header's value as text.
fn header(message: &impl Message, key: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, Error> {
        let deadline = Instant::now() + wait;
        let mut events = Vec::new();
        while events.len() < max {
            // Wait for the first event; after it, take only what has already arrived.
            let until = if events.is_empty() {
                deadline
            } else {
                Instant::now() + Duration::from_millis(1)
            };
            let message = match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(error)) if events.is_empty() => return Err(unavailable(error)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "consumer error; returning what was received");
                    break;
                }
                Ok(Ok(message)) => message,
            };
            let mut delivered = Delivered {
                event_id: None,
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            };
            let decoded = message
                .payload()
                .ok_or_else(|| "no payload".to_owned())
                .and_then(|bytes| serde_json::from_slice(bytes).map_err(|e| e.to_string()))
                .and_then(|json| RecordedEvent::from_json(json).map_err(|e| e.to_string()));
            match decoded {
                Ok(mut event) => {
                    // The header names the publish, the latest hop: consumers continue
                    // from it, not from the append the payload's metadata names.
                    if let Some(traceparent) = header(&message, context::TRACEPARENT) {
                        event.event.metadata.traceparent = Some(traceparent);
                    }
                    delivered.event_id = Some(event.event.event_id);
                    events.push(event);
                }
                // Not an oxcart event: nothing can handle it, so it is skipped, and
                // committed past with the events around it.
                Err(error) => tracing::error!(
                    topic = %delivered.topic,
                    partition = delivered.partition,
                    offset = delivered.offset,
                    %error,
                    "skipping a message that is not an event envelope"
                ),
            }
            self.delivered.push_back(delivered);
        }
        Ok(events)
    }

    async fn commit(&mut self, through: &RecordedEvent) -> Result<(), Error> {
        let id = Some(through.event.event_id);
        let Some(index) = self.delivered.iter().rposition(|d| d.event_id == id) else {
            return Ok(());
        };
        // A partition's committed offset is the next one to read.
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for done in self.delivered.drain(..=index) {
            let entry = next.entry((done.topic, done.partition)).or_default();
            *entry = (*entry).max(done.offset + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(unavailable)?;
        }
        self.blocking(move |consumer| consumer.commit(&list, CommitMode::Sync))
            .await
    }

    /// The last finished measurement, starting the next one: the runner asks between
    /// batches, and a measurement is several round trips (one per partition for the
    /// watermarks) that a slow broker can stretch to most of a second. The first call
    /// waits for its measurement; after that the figure is one call old.
    async fn lag(&mut self) -> Result<u64, Error> {
        if let Some(done) = self
            .measuring
            .take_if(|measuring| measuring.is_finished() || self.lag.is_none())
        {
            self.lag = Some(joined(done).await?);
        }
        let lag = match self.lag {
            Some(lag) => lag,
            None => joined(self.measure()).await?,
        };
        self.lag = Some(lag);
        if self.measuring.is_none() {
            self.measuring = Some(self.measure());
        }
        Ok(lag)
    }
}
