//! The bus on SQS: a consumer group reads its own FIFO queue.
//!
//! A poll receives messages (long polling, up to SQS's 20 s at a time) and keeps their
//! receipt handles; a commit deletes every message delivered up to and including the one
//! named, in delivery order. A message not deleted comes back once its visibility timeout
//! runs out, which is the bus's at-least-once redelivery; a member that goes away makes
//! what it held visible again at once, so its successor does not wait out the timeout.
//!
//! The lag is what the queue holds: waiting messages plus those delivered and not yet
//! deleted (SQS's approximate counts).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName,
};
use oxcart_events::RecordedEvent;
use oxcart_events::bus::{Bus, Subscription, topic_of};
use oxcart_events::store::Error;
use uuid::Uuid;

use crate::{Queue, boxed};

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's largest receive and batch.
const MAX_BATCH: usize = 10;

pub struct SqsBus {
    client: Client,
    queues: HashMap<String, Queue>,
}

impl SqsBus {
    pub fn new(client: Client, queues: impl IntoIterator<Item = Queue>) -> Self {
        Self {
            client,
            queues: queues.into_iter().map(|q| (q.group.clone(), q)).collect(),
        }
    }
}

#[async_trait]
impl Bus for SqsBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&'static str],
    ) -> Result<Box<dyn Subscription>, Error> {
        let queue = self.queues.get(group).ok_or_else(|| {
            Error::Backend(format!("consumer group {group} has no SQS queue configured").into())
        })?;
        if let Some(topic) = topics.iter().find(|t| !queue.topics.contains(t)) {
            return Err(Error::Backend(
                format!("the queue of {group} is not fed topic {topic}").into(),
            ));
        }
        Ok(Box::new(SqsSubscription {
            client: self.client.clone(),
            queue: queue.clone(),
            topics: topics.to_vec(),
            delivered: Vec::new(),
        }))
    }
}

struct SqsSubscription {
    client: Client,
    queue: Queue,
    topics: Vec<&'static str>,
    /// Delivered and not yet deleted, in delivery order: event id and receipt handle.
    delivered: Vec<(Uuid, String)>,
}

impl SqsSubscription {
    async fn delete(&self, receipts: &[String]) -> Result<(), Error> {
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| Error::Backend(e.into()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::Unavailable(boxed(e)))?;
            if let Some(failed) = output.failed().first() {
                return Err(Error::Unavailable(
                    format!("SQS did not delete a message: {}", failed.code()).into(),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for SqsSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let output = self
                .client
                .receive_message()
                .queue_url(&self.queue.url)
                .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
                .wait_time_seconds(left.min(MAX_WAIT).as_secs() as i32)
                .send()
                .await
                .map_err(|e| Error::Unavailable(boxed(e)))?;
            let mut events = Vec::new();
            let mut unwanted = Vec::new();
            for message in output.messages() {
                let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else {
                    continue;
                };
                let event = match serde_json::from_str(body).map(RecordedEvent::from_json) {
                    Ok(Ok(event)) => event,
                    Ok(Err(error)) | Err(error) => {
                        // Left undeleted: redrive takes it to the dead-letter queue.
                        tracing::error!(queue = %self.queue.url, message_id = message.message_id().unwrap_or(""), %error, "a message that is not an event");
                        continue;
                    }
                };
                if self.topics.contains(&topic_of(&event.event.aggregate_type)) {
                    self.delivered.retain(|(id, _)| *id != event.event.event_id);
                    self.delivered
                        .push((event.event.event_id, receipt.to_owned()));
                    events.push(event);
                } else {
                    unwanted.push(receipt.to_owned());
                }
            }
            // Another topic routed to this group's queue: nobody here wants it.
            self.delete(&unwanted).await?;
            // A wait under a second is one receive: SQS counts waits in whole seconds.
            if !events.is_empty() || left < Duration::from_secs(1) {
                return Ok(events);
            }
        }
    }

    async fn commit(&mut self, through: &RecordedEvent) -> Result<(), Error> {
        let Some(index) = self
            .delivered
            .iter()
            .position(|(id, _)| *id == through.event.event_id)
        else {
            return Ok(());
        };
        let done: Vec<String> = self
            .delivered
            .drain(..=index)
            .map(|(_, receipt)| receipt)
            .collect();
        self.delete(&done).await
    }

    async fn lag(&mut self) -> Result<u64, Error> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| Error::Unavailable(boxed(e)))?
            .attributes
            .unwrap_or_default();
        Ok([
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
        .sum())
    }
}

impl Drop for SqsSubscription {
    /// Makes what this member held visible again, so the group's next member gets it now
    /// rather than after the visibility timeout. Best effort: the timeout is the backstop.
    fn drop(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let url = self.queue.url.clone();
        let held: Vec<String> = self.delivered.drain(..).map(|(_, r)| r).collect();
        runtime.spawn(async move {
            for chunk in held.chunks(MAX_BATCH) {
                let entries = chunk.iter().enumerate().filter_map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                });
                let _ = client
                    .change_message_visibility_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries.collect()))
                    .send()
                    .await;
            }
        });
    }
}
