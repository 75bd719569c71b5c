//! Dead letters on Kafka: kept in the database for `oxcart dlq`, and published to the
//! topic's dead-letter topic for anything else that watches the cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topic_of;
use oxcart_events::consumer::{DeadLetter, DeadLetters};
use oxcart_events::store::BoxError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::KafkaConfig;
use crate::relay::partition_key;

pub struct KafkaDeadLetters {
    store: Arc<dyn DeadLetters>,
    producer: FutureProducer,
    config: KafkaConfig,
}

impl KafkaDeadLetters {
    /// Dead letters kept in `store` and published to `<topic>.dlq`.
    pub fn new(store: Arc<dyn DeadLetters>, config: &KafkaConfig) -> Result<Self, crate::Error> {
        let producer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        Ok(Self {
            store,
            producer,
            config: config.clone(),
        })
    }
}

#[async_trait]
impl DeadLetters for KafkaDeadLetters {
    async fn park(
        &self,
        group: &str,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<Uuid, BoxError> {
        // The table first: it is what replay reads, and parking again is harmless.
        let id = self.store.park(group, event, error, attempts).await?;
        let topic = self
            .config
            .dead_letter_topic(topic_of(&event.event.aggregate_type));
        let (key, payload) = (partition_key(event), event.to_json().to_string());
        let (letter, attempts) = (id.to_string(), attempts.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event-type",
                value: Some(&event.event.event_type),
            })
            .insert(Header {
                key: "consumer-group",
                value: Some(group),
            })
            .insert(Header {
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: "attempts",
                value: Some(&attempts),
            })
            .insert(Header {
                key: "dead-letter-id",
                value: Some(&letter),
            });
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)?;
        Ok(id)
    }

    async fn list(
        &self,
        group: Option<&str>,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, BoxError> {
        self.store.list(group, include_resolved).await
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, BoxError> {
        self.store.get(id).await
    }

    async fn resolve(&self, id: Uuid) -> Result<(), BoxError> {
        self.store.resolve(id).await
    }

    async fn record_failure(&self, id: Uuid, error: &str) -> Result<(), BoxError> {
        self.store.record_failure(id, error).await
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, BoxError> {
        self.store.depth().await
    }
}
