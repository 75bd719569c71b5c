//! The Kafka adapter, on librdkafka: distributed mode's event transport.
//!
//! # Layout
//! - [`Relay`]: publishes the event log (the outbox every service appends to in its own
//!   transaction) to Kafka, in log order, with the idempotent producer and `acks=all`.
//!   One relay is active per store at a time, the one holding a lease in the database.
//! - [`KafkaBus`]: the bus port on consumer groups with `enable.auto.commit=false`; a
//!   subscription commits offsets only when the consumer runner says an event is done.
//! - [`KafkaDeadLetters`]: parks a poison event in the database (for `oxcart dlq`) and
//!   publishes it to the topic's dead-letter topic, `<topic>.dlq`.
//! - [`ensure_topics`] creates the topics and their dead-letter topics at start, after
//!   [`connect`] has shown the brokers answer (or said in one line why not: a refused
//!   certificate, a failed SASL login).
//! - [`Properties`]: librdkafka settings passed through from configuration, so a cluster
//!   behind TLS and SASL (MSK, Confluent Cloud, Aiven) needs no rebuild.
//!
//! Messages are the event envelope as JSON, keyed by order id so that one order's events
//! share a partition and keep their order, with `event-type`, `event-id`,
//! `correlation-id` and (when the event carries one) `traceparent` headers.
//!
//! # How delivery holds
//! **The relay.** One relay publishes at a time: the one holding the lease in
//! `relay_leases` (taken when it has lapsed, renewed every round, 5 s long). A round reads
//! the events after the `kafka-relay` checkpoint, sends them with the idempotent producer
//! (`acks=all`) keyed by order id and waits for every acknowledgement, holding no
//! transaction or connection meanwhile (it once held a transaction, with an advisory lock,
//! across the wait); then one statement moves the checkpoint from where the round found it,
//! only while the relay still holds the lease. A relay that dies mid-round never moves the
//! checkpoint, so the next leader starts from the last one: at least once, never lost.
//!
//! **The bus.** `commit(through)` stores, per partition, the offset after the last event the
//! runner has finished, and librdkafka commits what is stored every 500 ms, on a rebalance
//! and on close (one request per member rather than per batch; a crash redelivers at most
//! that interval, which the inboxes skip). The lag is measured with a few requests: the
//! group's committed offsets, and every leader's end offsets in one `ListOffsets` each. Each
//! subscription keeps a second, never-joining client (the observer) that measures the
//! group's lag on connections of its own, off the consumer's path: a broker answers one
//! connection's requests in order, so a lag asked over the member's connections would wait
//! behind its fetches.
//!
//! **Start-up.** [`connect`] asks for the cluster's metadata and, through an error callback,
//! names a refused certificate or login at once rather than timing out.

mod bus;
mod dead_letters;
mod properties;
mod relay;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use oxcart_events::bus::topics;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

pub use bus::KafkaBus;
pub use dead_letters::KafkaDeadLetters;
pub use properties::{ENV_PREFIX, Properties, PropertyError};
pub use relay::{CHECKPOINT as RELAY_CHECKPOINT, LEASE, Relay, RelayMetrics};

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
    /// librdkafka properties for every client (`security.protocol`, `sasl.*`, `ssl.*`, …).
    pub properties: Properties,
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
            properties: Properties::default(),
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

    /// A client's configuration: the passed-through properties, then oxcart's own, which
    /// each client adds to (and which [`Properties`] refuses to take from configuration).
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in self.properties.iter() {
            config.set(key, value);
        }
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
    #[error("cannot delete topic {topic}: {code}")]
    DeleteTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// The brokers did not answer; `reason` is what librdkafka last said about them
    /// (a refused certificate, a failed login, a refused connection).
    #[error("cannot reach Kafka at {brokers}: {reason}")]
    Connect { brokers: String, reason: String },
}

/// Keeps what librdkafka reports about its connections, which a failed request alone
/// does not say (it only times out).
#[derive(Default)]
struct Reporting {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl Reporting {
    /// The last error, if it is one that retrying cannot mend: TLS or SASL refused.
    fn fatal(&self) -> Option<String> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(code, _)| {
                matches!(
                    code,
                    RDKafkaErrorCode::SSL
                        | RDKafkaErrorCode::Authentication
                        | RDKafkaErrorCode::SaslAuthenticationFailed
                        | RDKafkaErrorCode::InvalidConfig
                )
            })
            .map(|(_, reason)| reason.clone())
    }

    fn last(&self) -> Option<String> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref().map(|(_, reason)| reason.clone())
    }
}

impl ClientContext for Reporting {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            *self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((code, reason.to_owned()));
        }
    }
}

impl ConsumerContext for Reporting {}

/// Asks the brokers for the cluster's metadata, within `timeout`. A certificate the
/// client refuses, or a login the broker refuses, fails at once with librdkafka's own
/// words for it; a broker that does not answer fails at the timeout with the last
/// connection error.
pub async fn connect(config: &KafkaConfig, timeout: Duration) -> Result<(), Error> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let brokers = config.brokers.clone();
        let failed = |reason: String| Error::Connect {
            brokers: brokers.clone(),
            reason,
        };
        let client: BaseConsumer<Reporting> = config
            .client()
            .create_with_context(Reporting::default())
            .map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        loop {
            let Err(error) = client.fetch_metadata(None, Duration::from_millis(500)) else {
                return Ok(());
            };
            // Serves the callbacks, the error callback among them.
            let _ = client.poll(Duration::ZERO);
            if let Some(reason) = client.context().fatal() {
                return Err(failed(reason));
            }
            if Instant::now() >= deadline {
                let reason = client.context().last().unwrap_or_else(|| error.to_string());
                return Err(failed(reason));
            }
        }
    })
    .await
    .map_err(lost)?
}

/// Creates the topics and their dead-letter topics; topics that exist are left as they
/// are. Fails early, with the cause, when the brokers cannot be reached.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), Error> {
    connect(config, Duration::from_secs(30)).await?;
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let names = topic_names(config);
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
    published(config, names).await
}

/// A blocking call whose thread was lost (it panicked, or the runtime is shutting down).
fn lost(error: tokio::task::JoinError) -> Error {
    Error::Connect {
        brokers: String::new(),
        reason: error.to_string(),
    }
}

/// Every topic and dead-letter topic `config` names.
fn topic_names(config: &KafkaConfig) -> Vec<String> {
    topics::ALL
        .iter()
        .flat_map(|topic| [config.name(topic), config.dead_letter_topic(topic)])
        .collect()
}

/// Waits until the brokers publish every one of `names` in their metadata, each
/// partition with a leader. A topic the controller has just created reaches the other
/// brokers a moment later, and a consumer that subscribes to it before then is told it
/// does not exist, and looks again only minutes later. Asked several times in a row,
/// since each request may go to another broker.
async fn published(config: &KafkaConfig, names: Vec<String>) -> Result<(), Error> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.client().create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut in_a_row = 0;
        while in_a_row < 3 {
            let metadata = client.fetch_metadata(None, Duration::from_secs(5))?;
            let ready = names.iter().all(|name| {
                metadata.topics().iter().any(|topic| {
                    topic.name() == name
                        && topic.error().is_none()
                        && !topic.partitions().is_empty()
                        && topic.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
            in_a_row = if ready { in_a_row + 1 } else { 0 };
            if Instant::now() >= deadline {
                return Err(Error::Connect {
                    brokers: config.brokers.clone(),
                    reason: "the topics were created but the brokers do not list them".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })
    .await
    .map_err(lost)?
}

/// Deletes the topics and dead-letter topics `config` names: what a test or a benchmark
/// created under a prefix of its own, when it is done with them. Topics already gone are
/// no error.
pub async fn delete_topics(config: &KafkaConfig) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let names = topic_names(config);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(Error::DeleteTopic { topic, code }),
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
        connect(&self.0, Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())
    }
}
