//! Helpers shared by oxcart's test suites.
//!
//! # Layout
//! - [`event_store`]: the contract every `EventStore` adapter must pass, and
//!   [`event_store_contract!`] to run it against one.
//! - [`bus`]: the contract of the bus and dead-letter ports, and [`bus_contract!`].
//! - The contracts of the other ports with more than one adapter, each with its macro:
//!   [`checkpoints`] (SQL, DynamoDB, memory), [`order_views`] (SQL, DynamoDB), [`ledger`]
//!   (SQL, DynamoDB), [`mailer`] (files, SMTP), [`catalog`] (in-process, over HTTP).
//!   [`contract`] is what their macros expand to.
//! - [`evolution`]: holds a producer's event fixtures to its payloads and contracts.
//! - [`api`]: a small HTTP client that speaks the oxcart API and checks problem documents.
//! - [`cleanup`]: a guard that runs an async clean-up when the test is done.
//! - [`process`]: runs the real `oxcart` binary as a child, for tests that kill it.
//! - [`postgres`]: a fresh PostgreSQL database per test, and restarting the server.
//! - [`sqlite`]: a fresh SQLite database per test.
//! - [`services`]: where the real servers `.ci/services` starts are, and their test CA.
//! - [`kafka`]: the three-node Apache Kafka cluster, and killing and restarting a node.
//! - [`otlp`]: an OTLP trace receiver, to see what a collector would.
//! - [`jaeger`]: Jaeger's query API, to read a trace back from the real collector.
//! - [`mailpit`]: the SMTP servers, and their API to read back what arrived.
//! - [`tls_proxy`]: a TLS front for a plain server, with the test CA's certificate.
//! - [`moto`]: moto's server, standing in for DynamoDB and SQS.
//! - [`stripe`]: stripe-mock, Stripe's mock of its API, behind a front that adds outcomes,
//!   idempotency and faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod bus;
pub mod catalog;
pub mod checkpoints;
pub mod cleanup;
pub mod contract;
pub mod event_store;
pub mod evolution;
pub mod jaeger;
pub mod kafka;
pub mod ledger;
pub mod mailer;
pub mod mailpit;
pub mod moto;
pub mod order_views;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod services;
pub mod sqlite;
pub mod stripe;
pub mod tls_proxy;
