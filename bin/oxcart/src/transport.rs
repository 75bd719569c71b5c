//! How events travel between services: the embedded log (the event store's own table),
//! or Kafka when `KAFKA_BROKERS` is set (built with `--features kafka`).

use std::sync::Arc;

use futures::future::BoxFuture;
use oxcart_db::Db;
use oxcart_events::EventStore;
use oxcart_events::bus::{Bus, LogBus};
use oxcart_events::consumer::DeadLetters;
use oxcart_platform::health::Health;
use oxcart_platform::metrics::Metrics;
use oxcart_sql::{DbCheckpoints, DbDeadLetters};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A task that runs until its token is cancelled.
pub type Background = (
    &'static str,
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>,
);

pub struct Transport {
    pub bus: Arc<dyn Bus>,
    pub dead_letters: Arc<dyn DeadLetters>,
    /// The outbox relay, when events leave the database for a broker.
    pub relay: Option<Background>,
}

impl Transport {
    pub async fn open(
        config: &Config,
        db: &Db,
        store: &Arc<dyn EventStore>,
        metrics: &Metrics,
        health: Health,
    ) -> anyhow::Result<(Self, Health)> {
        let letters: Arc<dyn DeadLetters> = Arc::new(DbDeadLetters(db.clone()));
        if config.kafka.brokers.is_none() {
            let bus = LogBus::new(Arc::clone(store), Arc::new(DbCheckpoints(db.clone())));
            let transport = Self {
                bus: Arc::new(bus),
                dead_letters: letters,
                relay: None,
            };
            return Ok((transport, health));
        }
        kafka(config, db, store, metrics, letters, health).await
    }
}

#[cfg(feature = "kafka")]
async fn kafka(
    config: &Config,
    db: &Db,
    store: &Arc<dyn EventStore>,
    metrics: &Metrics,
    letters: Arc<dyn DeadLetters>,
    health: Health,
) -> anyhow::Result<(Transport, Health)> {
    use anyhow::Context as _;
    use oxcart_kafka::{KafkaBus, KafkaDeadLetters, Reachable, Relay, RelayMetrics};

    let kafka = config.kafka()?;
    oxcart_kafka::ensure_topics(&kafka)
        .await
        .context("creating the Kafka topics")?;
    let relay_metrics = RelayMetrics::new();
    for collector in relay_metrics.collectors() {
        metrics.register(collector);
    }
    let relay = Relay::new(db.clone(), Arc::clone(store), &kafka, relay_metrics)?;
    let transport = Transport {
        bus: Arc::new(KafkaBus::new(kafka.clone())),
        dead_letters: Arc::new(KafkaDeadLetters::new(letters, &kafka)?),
        relay: Some((
            "kafka-relay",
            Box::new(move |token| Box::pin(relay.run(token))),
        )),
    };
    Ok((transport, health.with(Reachable(kafka))))
}

#[cfg(not(feature = "kafka"))]
async fn kafka(
    _: &Config,
    _: &Db,
    _: &Arc<dyn EventStore>,
    _: &Metrics,
    _: Arc<dyn DeadLetters>,
    _: Health,
) -> anyhow::Result<(Transport, Health)> {
    anyhow::bail!(
        "KAFKA_BROKERS is set, but this build has no Kafka support; build with `--features kafka`"
    )
}
