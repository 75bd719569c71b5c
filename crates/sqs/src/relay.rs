//! The relay: the event log, from a checkpoint, to each consumer group's queue.
//!
//! This is the outbox's far side. The event store commits an event and its place in the log
//! in one transaction; the relay reads the log after its checkpoint, sends each event to
//! the queues whose group reads its topic, and only then moves the checkpoint. A crash in
//! between sends the same events again, which the queues' de-duplication ids and the
//! consumers' own de-duplication absorb; nothing acknowledged is ever skipped.
//!
//! In Lambda the table's stream invokes [`SqsRelay::catch_up`]: the stream's records are a
//! doorbell, not the data, so a lost or repeated invocation changes nothing. Elsewhere
//! [`SqsRelay::run`] does the same on the store's doorbell.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use oxcart_events::bus::{Checkpoints, topic_of};
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, RecordedEvent};
use tokio_util::sync::CancellationToken;

use crate::{Queue, boxed};

/// The relay's checkpoint name.
pub const CHECKPOINT: &str = "sqs-relay";
/// Events read from the log at a time.
const READ_BATCH: usize = 100;
/// SQS takes at most ten messages in one batch.
const SEND_BATCH: usize = 10;

pub struct SqsRelay {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn Checkpoints>,
    client: Client,
    queues: Vec<Queue>,
}

impl SqsRelay {
    pub fn new(
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn Checkpoints>,
        client: Client,
        queues: Vec<Queue>,
    ) -> Self {
        Self {
            store,
            checkpoints,
            client,
            queues,
        }
    }

    /// Relays everything after the checkpoint until the log has no more; answers with how
    /// many events it relayed.
    pub async fn catch_up(&self) -> Result<u64, BoxError> {
        let mut relayed = 0;
        let mut checkpoint = self.checkpoints.load(CHECKPOINT).await?;
        loop {
            let events = self.store.read_all(checkpoint, READ_BATCH).await?;
            let Some(last) = events.last() else {
                return Ok(relayed);
            };
            for queue in &self.queues {
                let wanted: Vec<&RecordedEvent> = events
                    .iter()
                    .filter(|e| queue.topics.contains(&topic_of(&e.event.aggregate_type)))
                    .collect();
                for batch in wanted.chunks(SEND_BATCH) {
                    self.send(queue, batch).await?;
                }
            }
            checkpoint = last.position;
            self.checkpoints.save(CHECKPOINT, checkpoint).await?;
            relayed += events.len() as u64;
            tracing::debug!(through = checkpoint, count = events.len(), "relayed to SQS");
        }
    }

    /// Relays until `cancel`, waking on this process's appends and every `poll` for
    /// others'. A failed pass is logged and tried again at the next wake.
    pub async fn run(self, cancel: CancellationToken, poll: Duration) {
        let mut doorbell = self.store.subscribe();
        loop {
            doorbell.borrow_and_update();
            if let Err(error) = self.catch_up().await {
                tracing::warn!(error = %error, "relay to SQS failed; will retry");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = doorbell.changed() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn send(&self, queue: &Queue, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let mut entries = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(event.to_json().to_string())
                .message_group_id(event.event.aggregate_id.to_string())
                .message_deduplication_id(event.event.event_id.to_string())
                .message_attributes("eventType", string(&event.event.event_type)?);
            if let Some(traceparent) = &event.event.metadata.traceparent {
                entry = entry.message_attributes("traceparent", string(traceparent)?);
            }
            entries.push(entry.build()?);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(boxed)?;
        // A batch succeeds message by message; any refusal fails the pass, so the
        // checkpoint stays and the whole batch is sent again (de-duplicated by event id).
        if let Some(failed) = output.failed().first() {
            return Err(format!(
                "SQS refused a message for {}: {} {}",
                queue.group,
                failed.code(),
                failed.message().unwrap_or("")
            )
            .into());
        }
        Ok(())
    }
}

fn string(value: &str) -> Result<MessageAttributeValue, BoxError> {
    Ok(MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()?)
}
