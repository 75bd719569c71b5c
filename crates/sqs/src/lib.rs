//! The SQS adapters of the serverless mode: the relay that copies the event log to FIFO
//! queues, and the bus that reads them.
//!
//! # Queues
//! Each consumer group has a FIFO queue of its own (SQS deletes what a consumer has
//! finished with, so groups cannot share one), fed with the topics it reads. A [`Queue`]
//! names the three. Messages are the spec's envelope as JSON, with:
//! - `MessageGroupId` = the aggregate id, so one order's events arrive in the order they
//!   were appended while different orders go in parallel (what a Kafka partition key
//!   gives);
//! - `MessageDeduplicationId` = the event id, so a relay that sends again after a crash
//!   within SQS's five-minute window adds nothing; after it, consumers de-duplicate;
//! - message attributes `eventType` and `traceparent`.
//!
//! A message that is not an event is never handed to a consumer; the queue's redrive
//! policy moves it to the dead-letter queue after its last receive.

pub mod bus;
pub mod relay;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use oxcart_events::store::BoxError;

pub use bus::SqsBus;
pub use relay::SqsRelay;

/// A consumer group's queue and the topics relayed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub group: String,
    pub url: String,
    pub topics: Vec<&'static str>,
}

/// The SDK error with its whole chain of causes (service code and message included).
pub(crate) fn boxed<E, R>(error: SdkError<E, R>) -> BoxError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    format!("SQS: {}", DisplayErrorContext(&error)).into()
}

/// How a queue is made, as `deploy/serverless/terraform` makes it.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// The name without `.fifo`.
    pub name: String,
    pub visibility_timeout_secs: u32,
    /// Receives before a message moves to `<name>-dlq.fifo`; `None`: no dead-letter queue.
    pub max_receive_count: Option<u32>,
}

/// Creates a FIFO queue (and its dead-letter queue), for tests and local runs; answers
/// with the queue's URL and, when there is one, the dead-letter queue's.
pub async fn create_queue(
    client: &Client,
    spec: &QueueSpec,
) -> Result<(String, Option<String>), BoxError> {
    let fifo = |name: &str| {
        client
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
    };
    let mut request = fifo(&spec.name).attributes(
        QueueAttributeName::VisibilityTimeout,
        spec.visibility_timeout_secs.to_string(),
    );
    let mut dlq = None;
    if let Some(max) = spec.max_receive_count {
        let url = fifo(&format!("{}-dlq", spec.name))
            .send()
            .await
            .map_err(boxed)?
            .queue_url
            .ok_or("SQS did not answer with the dead-letter queue's URL")?;
        let arn = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(boxed)?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or("SQS did not answer with the dead-letter queue's ARN")?;
        let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max });
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        dlq = Some(url);
    }
    let url = request
        .send()
        .await
        .map_err(boxed)?
        .queue_url
        .ok_or("SQS did not answer with the queue's URL")?;
    Ok((url, dlq))
}
