//! Helpers shared by oxcart's test suites.
//!
//! # Layout
//! - [`event_store`]: the contract every `EventStore` adapter must pass, and
//!   [`event_store_contract!`] to run it against one.
//! - [`bus`]: the contract of the bus and dead-letter ports, and [`bus_contract!`].
//! - [`api`]: a small HTTP client that speaks the oxcart API and checks problem documents.
//! - [`process`]: runs the real `oxcart` binary as a child, for tests that kill it.
//! - [`postgres`]: a fresh PostgreSQL database per test.
//! - [`kafka`]: a tansu broker that a test can restart.
//! - [`otlp`]: an OTLP trace receiver, to see what a collector would.
//! - [`moto`]: moto's server, standing in for DynamoDB and SQS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod bus;
pub mod event_store;
pub mod kafka;
pub mod moto;
pub mod otlp;
pub mod postgres;
pub mod process;
