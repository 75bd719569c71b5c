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
//! - [`worker`]: runs consumer handlers over an SQS batch and reports the messages that
//!   failed, so only those are delivered again.
//! - [`relay`]: the stream-triggered relay function.
//! - [`views`]: the order read model in DynamoDB, and the projection that feeds it.

pub mod relay;
pub mod views;
pub mod worker;
