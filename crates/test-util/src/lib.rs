//! Helpers shared by oxcart's test suites.
//!
//! # Layout
//! - [`event_store`]: the contract every `EventStore` adapter must pass, and
//!   [`event_store_contract!`] to run it against one.
//! - [`api`]: a small HTTP client that speaks the oxcart API and checks problem documents.
//! - [`process`]: runs the real `oxcart` binary as a child, for tests that kill it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod event_store;
pub mod process;
