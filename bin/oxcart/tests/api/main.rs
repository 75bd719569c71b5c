//! oxcart's API test suite: the real application on a free port with its own SQLite
//! database per test, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authz;
mod cache;
mod catalog;
mod conventions;
#[cfg(feature = "kafka")]
mod distributed;
mod docs;
mod errors;
mod health;
mod helpers;
mod housekeeping;
mod invoices;
mod limits;
mod mail;
mod metrics;
mod orders;
mod password_reset;
mod ports;
mod process;
mod refunds;
mod replica;
mod saga;
mod sessions;
mod stripe;
mod tls;
mod traces;
mod users;
mod webhooks;
