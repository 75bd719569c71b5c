//! The outbox relay: from the event log to Kafka.

use std::sync::Arc;
use std::time::Duration;

use oxcart_db::{self as db, Db};
use oxcart_events::bus::topic_of;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, RecordedEvent, trace};
use oxcart_platform::telemetry::context;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::Span;

use crate::KafkaConfig;

/// The checkpoint that records how far the log has been published.
pub const CHECKPOINT: &str = "kafka-relay";

/// How long a relay's lease lasts from its last round: how long the others wait before
/// taking over from one that died. A round that takes longer (a broker that is slow to
/// acknowledge) may see another relay publish alongside it; both are at least once.
pub const LEASE: Duration = Duration::from_secs(5);

/// Publishes the event log to Kafka, in log order, each event exactly where the last
/// round stopped.
///
/// One relay publishes at a time: the one holding the lease (`relay_leases`), which it
/// takes when the lease has lapsed and renews every round. A round reads the next batch
/// after the `kafka-relay` checkpoint, publishes it and waits for every acknowledgement
/// (`acks=all`), holding no transaction and no connection meanwhile; then it moves the
/// checkpoint, in one statement, from where it found it and only while it still holds
/// the lease. Any number of processes may run a relay; if the leader dies its lease
/// lapses after [`LEASE`] and another takes over from the last checkpoint. A round cut
/// short after publishing publishes its events again: delivery is at least once, and
/// consumers de-duplicate by event id. Every statement is its own short transaction,
/// so it works through PgBouncer in transaction pooling mode.
pub struct Relay {
    /// Names this relay in the lease.
    id: String,
    db: Db,
    store: Arc<dyn EventStore>,
    producer: FutureProducer,
    config: KafkaConfig,
    metrics: RelayMetrics,
}

/// How long publishing takes, from a round's start to the last acknowledgement.
#[derive(Clone)]
pub struct RelayMetrics {
    pub publish_seconds: Histogram,
    /// `outbox_backlog`: events in the log the relay has not published yet.
    pub backlog: IntGauge,
    /// `events_published_total{topic}`.
    pub published: IntCounterVec,
}

impl RelayMetrics {
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.publish_seconds.clone()),
            Box::new(self.backlog.clone()),
            Box::new(self.published.clone()),
        ]
    }

    pub fn new() -> Self {
        Self {
            backlog: IntGauge::new(
                "outbox_backlog",
                "Events in the log that the outbox relay has not yet published to Kafka",
            )
            .expect("valid metric definition"),
            published: IntCounterVec::new(
                Opts::new(
                    "events_published_total",
                    "Events the outbox relay has published to Kafka and had acknowledged, per topic",
                ),
                &["topic"],
            )
            .expect("valid metric definition"),
            publish_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "relay_publish_duration_seconds",
                    "Time for the outbox relay to publish a batch of events and have every one acknowledged",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            )
            .expect("valid histogram"),
        }
    }
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    pub fn new(
        db: Db,
        store: Arc<dyn EventStore>,
        config: &KafkaConfig,
        metrics: RelayMetrics,
    ) -> Result<Self, crate::Error> {
        let producer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("compression.type", "none")
            .create()?;
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            db,
            store,
            producer,
            config: config.clone(),
            metrics,
        })
    }

    /// Publishes until `shutdown`: at once after an append in this process, and every
    /// `relay_interval` for appends made elsewhere.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut doorbell = self.store.subscribe();
        let mut failures = 0_u32;
        while !shutdown.is_cancelled() {
            let pause = match self.round().await {
                Ok(0) => {
                    failures = 0;
                    self.config.relay_interval
                }
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "the relay could not publish; retrying");
                    Duration::from_millis(100 * 2_u64.pow(failures.min(6)))
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = doorbell.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "the relay could not give up its lease; another takes over when it lapses");
        }
    }

    /// One round: how many events it published (none if another relay leads).
    pub async fn round(&self) -> Result<usize, BoxError> {
        if !self.lease().await? {
            return Ok(0);
        }
        let after = db::checkpoint(&mut *self.db.read_primary().await?, CHECKPOINT).await?;
        let head = self.store.head().await?;
        self.metrics.backlog.set(head - after);
        let events = self.store.read_all(after, self.config.relay_batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        let timer = self.metrics.publish_seconds.start_timer();
        self.publish(&events).await?;
        timer.observe_duration();
        self.metrics.backlog.set((head - last).max(0));
        // From where this round found it, and only while this relay leads: a relay whose
        // lease lapsed mid-round (and was taken) leaves the checkpoint to the new leader.
        let mut tx = self.db.begin().await?;
        let moved = db::query(
            "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position \
             WHERE projection_checkpoints.position = $3 AND EXISTS \
             (SELECT 1 FROM relay_leases WHERE relay_leases.name = $1 AND relay_leases.holder = $4)",
        )
        .bind(CHECKPOINT)
        .bind(last)
        .bind(after)
        .bind(&self.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if moved.rows_affected() == 0 {
            tracing::info!(
                after,
                last,
                "another relay took over during the round; it publishes from its checkpoint"
            );
        }
        Ok(events.len())
    }

    /// Takes the lease if it has lapsed, or renews it if this relay holds it: whether
    /// this relay leads for the next [`LEASE`].
    async fn lease(&self) -> Result<bool, BoxError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        let until = now + LEASE.as_millis() as i64;
        let mut tx = self.db.begin().await?;
        let taken = db::query(
            "INSERT INTO relay_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE relay_leases.holder = excluded.holder OR relay_leases.expires_at < $4",
        )
        .bind(CHECKPOINT)
        .bind(&self.id)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives the lease up, so that another relay takes over at once (at shutdown).
    async fn release(&self) -> Result<(), BoxError> {
        let mut tx = self.db.begin().await?;
        db::query("UPDATE relay_leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
            .bind(CHECKPOINT)
            .bind(&self.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<(), BoxError> {
        let messages: Vec<Message> = events
            .iter()
            .map(|e| Message::of(e, &self.config))
            .collect();
        // Sent together, awaited together: the idempotent producer keeps each
        // partition's order even when it retries.
        let sends = messages.iter().map(|m| {
            let record = FutureRecord::to(&m.topic)
                .key(&m.key)
                .payload(&m.payload)
                .headers(m.headers());
            self.producer.send(record, Duration::from_secs(30))
        });
        // Each message's span ends here, when the broker has acknowledged it.
        for (result, message) in futures::future::join_all(sends)
            .await
            .into_iter()
            .zip(&messages)
        {
            if let Err((error, _)) = result {
                trace::failed(&message.span, &error.to_string());
                return Err(error.into());
            }
        }
        for message in &messages {
            self.metrics
                .published
                .with_label_values(&[&message.topic])
                .inc();
        }
        Ok(())
    }
}

/// One event as a Kafka message.
struct Message {
    topic: String,
    key: String,
    payload: String,
    event_type: String,
    event_id: String,
    correlation_id: String,
    /// The context of `span`: consumers continue from the publish, not from the append.
    traceparent: Option<String>,
    /// `send <topic>`, a child of the append that wrote the event.
    span: Span,
}

impl Message {
    fn of(recorded: &RecordedEvent, config: &KafkaConfig) -> Self {
        let event = &recorded.event;
        let topic = config.name(topic_of(&event.aggregate_type));
        let key = partition_key(recorded);
        let span = tracing::info_span!(
            "send",
            otel.name = %format!("send {topic}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %topic,
            messaging.kafka.message.key = %key,
            messaging.message.id = %event.event_id,
            oxcart.event.type = %event.event_type,
            oxcart.event.position = recorded.position,
        );
        context::continue_trace(&span, event.metadata.traceparent.as_deref());
        let traceparent =
            context::traceparent(&span).or_else(|| event.metadata.traceparent.clone());
        Self {
            topic,
            key,
            payload: recorded.to_json().to_string(),
            event_type: event.event_type.clone(),
            event_id: event.event_id.to_string(),
            correlation_id: event.metadata.correlation_id.clone(),
            traceparent,
            span,
        }
    }

    fn headers(&self) -> OwnedHeaders {
        let headers = OwnedHeaders::new()
            .insert(header("event-type", &self.event_type))
            .insert(header("event-id", &self.event_id))
            .insert(header("correlation-id", &self.correlation_id));
        match &self.traceparent {
            Some(traceparent) => headers.insert(header("traceparent", traceparent)),
            None => headers,
        }
    }
}

fn header<'a>(key: &'a str, value: &'a String) -> Header<'a, &'a String> {
    Header {
        key,
        value: Some(value),
    }
}

/// The message key: the order an event belongs to, so that an order's stock, payment
/// and order events keep their relative order within one partition of each topic; the
/// aggregate id for events that belong to no order.
pub fn partition_key(recorded: &RecordedEvent) -> String {
    recorded.event.data["orderId"]
        .as_str()
        .map_or_else(|| recorded.event.aggregate_id.to_string(), str::to_owned)
}
