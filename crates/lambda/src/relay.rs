//! The relay function, invoked by the events table's stream.
//!
//! The stream's records are only a doorbell: the relay reads the log from its own
//! checkpoint (see `oxcart_sqs::relay`), so it relays in the log's order whatever records
//! arrive, and a retried or merged invocation sends nothing twice that the queues'
//! de-duplication would not absorb. An error fails the invocation, and Lambda retries the
//! stream batch; the checkpoint has not moved past anything unsent.

use aws_lambda_events::event::dynamodb::Event;
use oxcart_events::store::BoxError;
use oxcart_sqs::SqsRelay;

/// Relays everything committed so far; answers with how many events went out.
pub async fn on_stream(relay: &SqsRelay, event: &Event) -> Result<u64, BoxError> {
    let relayed = relay.catch_up().await?;
    tracing::info!(
        records = event.records.len(),
        relayed,
        "relayed the log to SQS"
    );
    Ok(relayed)
}
