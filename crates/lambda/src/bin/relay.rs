//! `relay`: invoked by the events table's stream; copies the log to the order queue.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    oxcart_lambda::init_logging();
    let functions = oxcart_lambda::functions::Functions::from_env().await?;
    let relay = &functions.relay()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| async move {
        oxcart_lambda::relay::on_stream(relay, &event.payload).await
    }))
    .await
}
