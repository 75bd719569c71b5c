//! The DynamoDB adapters of the serverless mode: the event store, named checkpoints and
//! dead letters.
//!
//! # Tables
//! - **events** (`pk` string, `sk` number): the event store. See [`event_store`] for its
//!   three kinds of item (the global head, stream items, log items).
//! - **state** (`pk` string, `sk` string): what the serverless functions keep about their
//!   own progress: checkpoints (the relay's place in the log) and dead letters.
//!
//! `deploy/serverless/terraform` creates both, on-demand, with point-in-time recovery; the
//! events table's stream (new images) is the relay's doorbell.

pub mod event_store;
pub mod state;

pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use oxcart_events::store::BoxError;

pub use event_store::DynamoEventStore;
pub use state::{DynamoCheckpoints, DynamoDeadLetters, create_state_table};

/// The AWS configuration the functions run with: region and credentials from the Lambda
/// environment (or the usual chain elsewhere). `endpoint` points every client at another
/// server, such as moto's in the tests (`AWS_ENDPOINT_URL` does the same from outside).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// A configuration for a local stand-in (moto): fixed region and dummy credentials, so
/// nothing is read from the environment.
pub fn local_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "local"),
        ))
        .build()
}

/// Whether an SDK error means "the service could not be reached or is throttling", which a
/// caller may retry, rather than a request it refused.
pub(crate) fn is_transient<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    }
}

/// Maps an SDK error onto the event store's error: transient ones are `Unavailable`.
pub(crate) fn store_error<E, R>(error: SdkError<E, R>) -> oxcart_events::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if is_transient(&error) {
        oxcart_events::Error::Unavailable(boxed(error))
    } else {
        oxcart_events::Error::Backend(boxed(error))
    }
}

/// Whether a call that may be refused went through: `Ok(false)` when DynamoDB refused it
/// with the service error `refusal` names (a condition not met, a table already there),
/// which the caller expects and answers itself; any other error, described whole.
pub fn applied<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    refusal: impl FnOnce(&E) -> bool,
) -> Result<bool, BoxError>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(refusal) => Ok(false),
        Err(error) => Err(boxed(error)),
    }
}

/// The SDK error with its whole chain of causes (its service code and message included),
/// which its own `Display` leaves out.
pub fn boxed<E, R>(error: SdkError<E, R>) -> BoxError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    format!("DynamoDB: {}", DisplayErrorContext(&error)).into()
}
