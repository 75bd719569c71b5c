//! The Kafka adapter, on librdkafka: distributed mode's event transport.
//!
//! # Layout
//! - [`Relay`]: publishes the event log (the outbox every service appends to in its own
//!   transaction) to Kafka, in log order, with the idempotent producer and `acks=all`.
//!   One relay is active per store at a time, elected by an advisory lock.
//! - [`KafkaBus`]: the bus port on consumer groups with `enable.auto.commit=false`; a
//!   subscription commits offsets only when the consumer runner says an event is done.
//! - [`KafkaDeadLetters`]: parks a poison event in the database (for `oxcart dlq`) and
//!   publishes it to the topic's dead-letter topic, `<topic>.dlq`.
//! - [`ensure_topics`] creates the topics and their dead-letter topics at start.
//!
//! Messages are the event envelope as JSON, keyed by order id so that one order's events
//! share a partition and keep their order, with `event-type`, `event-id`,
//! `correlation-id` and (when the event carries one) `traceparent` headers.

mod bus;
mod dead_letters;
mod relay;

use std::time::Duration;

use oxcart_events::bus::topics;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

pub use bus::KafkaBus;
pub use dead_letters::KafkaDeadLetters;
pub use relay::{Relay, RelayMetrics};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaConfig {
    /// `host:port,host:port`: the bootstrap brokers.
    pub brokers: String,
    /// Put before every topic and consumer-group name, so several deployments (or test
    /// runs) can share a cluster. Empty in production.
    pub prefix: String,
    /// Partitions of each topic created at start.
    pub partitions: i32,
    /// Replicas of each topic created at start (3 in production, with `min.insync.replicas`
    /// 2; 1 on a single broker).
    pub replication: i32,
    /// Events the relay publishes per round.
    pub relay_batch: usize,
    /// How often an idle relay looks for events appended by other processes.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            prefix: String::new(),
            partitions: 3,
            replication: 1,
            relay_batch: 500,
            relay_interval: Duration::from_millis(100),
        }
    }
}

impl KafkaConfig {
    /// The full name of topic or group `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The dead-letter topic of `topic`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        self.name(&topics::dead_letter(topic))
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "oxcart")
            // Brokers restart: keep trying rather than failing requests early.
            .set("reconnect.backoff.max.ms", "2000");
        config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates the topics and their dead-letter topics; topics that exist are left as they
/// are.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let names: Vec<String> = topics::ALL
        .iter()
        .flat_map(|topic| [config.name(topic), config.dead_letter_topic(topic)])
        .collect();
    let retention = (7 * 24 * 3600 * 1000_i64).to_string();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
            .set("retention.ms", &retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(new.iter(), &options).await? {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Readiness: the brokers answer a metadata request.
pub struct Reachable(pub KafkaConfig);

#[async_trait::async_trait]
impl oxcart_platform::health::Check for Reachable {
    fn name(&self) -> &'static str {
        "broker"
    }

    async fn check(&self) -> Result<(), String> {
        let config = self.0.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = config.client().create().map_err(|e| e.to_string())?;
            consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
