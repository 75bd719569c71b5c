//! The SQS worker: consumer handlers run over one batch of an event source mapping.
//!
//! Lambda deletes a batch's messages when the function succeeds and redelivers them all
//! when it fails, unless the function reports which ones failed (`batchItemFailures`, with
//! `ReportBatchItemFailures` on the mapping). This worker reports exactly the failed
//! messages, so one bad message never makes the others run again.
//!
//! The queues are FIFO, grouped by aggregate: once a message of a group fails, the later
//! messages of that group in the batch are not handled but reported failed too, so an
//! order's events are never applied out of order. Other groups go on.
//!
//! A message is retried by SQS after its visibility timeout; after the queue's
//! `maxReceiveCount` receives, the redrive policy moves it to the dead-letter queue. A
//! redelivered event is harmless: every handler applies an event at most once in effect.

use std::collections::HashSet;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topic_of;
use oxcart_events::consumer::{Handler, describe};
use oxcart_events::trace;
use tracing::Instrument as _;

/// Handles every record of `event` with each handler that reads its topic, and answers
/// with the records to deliver again.
pub async fn process(handlers: &[Arc<dyn Handler>], event: SqsEvent) -> SqsBatchResponse {
    let mut failed_groups = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        let failed = match &group {
            Some(group) if failed_groups.contains(group) => {
                tracing::info!(message_id = %id, %group, "held back behind a failed message of its group");
                true
            }
            _ => match handle(handlers, &record).await {
                Ok(()) => false,
                Err(error) => {
                    tracing::warn!(message_id = %id, receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str), error = %error, "message failed; SQS will deliver it again");
                    true
                }
            },
        };
        if failed {
            if let Some(group) = group {
                failed_groups.insert(group);
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// One record through every handler that wants it.
async fn handle(handlers: &[Arc<dyn Handler>], record: &SqsMessage) -> Result<(), String> {
    let body = record.body.as_deref().ok_or("a message without a body")?;
    let value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let event =
        RecordedEvent::from_json(value).map_err(|e| format!("not an event envelope: {e}"))?;
    let topic = topic_of(&event.event.aggregate_type);
    let attempt = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    for handler in handlers.iter().filter(|h| h.topics().contains(&topic)) {
        let span = trace::process_span(handler.group(), &event, attempt);
        if let Err(error) = handler.handle(&event).instrument(span.clone()).await {
            let error = describe(error.as_ref());
            trace::failed(&span, &error);
            return Err(format!("{}: {error}", handler.group()));
        }
    }
    Ok(())
}
