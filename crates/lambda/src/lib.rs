//! The serverless entry points: oxcart's order path as AWS Lambda functions, from the same
//! domain crates as the server.
//!
//! ```text
//! API Gateway ─▶ create-order / get-order ─▶ DynamoDB events table (one transaction per append)
//!                                                │ table stream (a doorbell)
//!                                                ▼
//!                                            relay ─▶ SQS FIFO queue (per consumer group)
//!                                                           │ event source mapping
//!                                                           ▼
//!                                                     process-order (partial batch failures)
//! ```
//!
//! # Layout
//! - [`functions`]: the four functions, wired from their environment (`src/bin` runs them).
//! - [`worker`]: runs consumer handlers over an SQS batch and reports the messages that
//!   failed, so only those are delivered again.
//! - [`relay`]: the stream-triggered relay function.
//! - [`views`]: the order read model in DynamoDB, and the projection that feeds it.
//! - [`ledger`]: the simulated payment provider's books in the state table.

pub mod functions;
pub mod ledger;
pub mod relay;
pub mod views;
pub mod worker;

/// Logs as JSON lines on stdout, which Lambda sends to CloudWatch Logs; `RUST_LOG` filters
/// (default `info`). No ANSI colours, no timestamps of our own: CloudWatch stamps each line.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        .init();
}
