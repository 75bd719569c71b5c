//! The bus port on Kafka consumer groups.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::{Bus, Subscription};
use oxcart_events::store::Error;
use oxcart_platform::telemetry::context;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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
            // Offsets are stored only when the runner commits an event it has finished
            // with (`commit` below), and librdkafka commits what is stored every
            // COMMIT_INTERVAL, on a rebalance and on close: one request a member, not one
            // a batch, for a crash to redeliver at most that interval's events, which the
            // consumers' inboxes skip.
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                COMMIT_INTERVAL.as_millis().to_string(),
            )
            .set("enable.auto.offset.store", "false")
            // A new group starts from the beginning of the log, as on the embedded log.
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "30000")
            // (fetch.wait.max.ms stays librdkafka's 500 ms: a broker answers a fetch as soon
            // as there is data, so a longer wait costs no latency, and a shorter one
            // multiplies the idle fetches every member sends every broker.)
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
            probe: Arc::new(std::sync::Mutex::new(LagProbe {
                observer,
                topics: names.iter().map(|t| (*t).to_owned()).collect(),
                partitions: None,
            })),
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
    probe: Arc<std::sync::Mutex<LagProbe>>,
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

/// How often a member commits the offsets it has stored.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

/// How long the partitions of the group's topics are taken as known, for the lag.
const PARTITIONS_FRESH: Duration = Duration::from_secs(30);

/// Measures a group's lag over every partition of its topics, not just one member's:
/// the group's lag, known before the member has joined.
struct LagProbe {
    observer: BaseConsumer,
    topics: Vec<String>,
    /// Every partition of the topics, and when they were listed.
    partitions: Option<(Instant, TopicPartitionList)>,
}

impl LagProbe {
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// What the group has not committed. A few requests in all: the committed offsets
    /// from the coordinator, and each partition leader's end offsets in one request per
    /// leader (the partitions are listed again only every [`PARTITIONS_FRESH`]).
    fn measure(&mut self) -> Result<u64, KafkaError> {
        let partitions = match self.partitions.take() {
            Some((at, list)) if at.elapsed() < PARTITIONS_FRESH => list,
            _ => self.list_partitions()?,
        };
        self.partitions = Some((Instant::now(), partitions.clone()));
        let committed = self
            .observer
            .committed_offsets(partitions.clone(), Self::TIMEOUT)?;
        let ends = self.offsets_at(&partitions, Offset::End)?;
        // Where a group that has committed nothing starts: the log's beginning.
        let unstarted: Vec<(String, i32)> = committed
            .elements()
            .iter()
            .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let starts = if unstarted.is_empty() {
            Default::default()
        } else {
            let mut list = TopicPartitionList::new();
            for (topic, partition) in &unstarted {
                list.add_partition(topic, *partition);
            }
            self.offsets_at(&list, Offset::Beginning)?
        };
        let mut lag = 0;
        for element in committed.elements() {
            let key = (element.topic().to_owned(), element.partition());
            let from = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => starts.get(&key).copied().unwrap_or(0),
            };
            let end = ends.get(&key).copied().unwrap_or(from);
            lag += u64::try_from(end - from).unwrap_or(0);
        }
        Ok(lag)
    }

    fn list_partitions(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut partitions = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self.observer.fetch_metadata(Some(topic), Self::TIMEOUT)?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    partitions.add_partition(found.name(), partition.id());
                }
            }
        }
        Ok(partitions)
    }

    /// The offset at `at` (the end, or the beginning) of each partition in `list`.
    fn offsets_at(
        &self,
        list: &TopicPartitionList,
        at: Offset,
    ) -> Result<BTreeMap<(String, i32), i64>, KafkaError> {
        let mut query = TopicPartitionList::new();
        for element in list.elements() {
            query.add_partition_offset(element.topic(), element.partition(), at)?;
        }
        // A "time" of END or BEGINNING asks for the partition's end or start offset.
        let found = self.observer.offsets_for_times(query, Self::TIMEOUT)?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some(((e.topic().to_owned(), e.partition()), offset)),
                _ => None,
            })
            .collect())
    }
}

impl KafkaSubscription {
    /// Starts measuring the group's lag on the observer.
    fn measure(&self) -> JoinHandle<Result<u64, KafkaError>> {
        let probe = Arc::clone(&self.probe);
        tokio::task::spawn_blocking(move || {
            probe
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .measure()
        })
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
        // Stored here, committed by librdkafka within COMMIT_INTERVAL (and on close). A
        // partition taken away by a rebalance meanwhile refuses the store: its new owner
        // delivers those events again, which their inboxes skip.
        match self.consumer.store_offsets(&list) {
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!("partitions revoked before their offsets were stored");
                Ok(())
            }
            stored => stored.map_err(unavailable),
        }
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
