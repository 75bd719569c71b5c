//! `process-order`: drains the order queue (event source mapping with
//! `ReportBatchItemFailures`), answering with the messages to deliver again.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    oxcart_lambda::init_logging();
    let functions = oxcart_lambda::functions::Functions::from_env().await?;
    let handlers = &functions.process_order();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(oxcart_lambda::worker::process(handlers, event.payload).await)
    }))
    .await
}
