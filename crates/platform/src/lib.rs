//! Scaffolding every oxcart service shares.
//!
//! # Layout
//! - [`problem`]: RFC 9457 errors; the one place an error becomes an HTTP status.
//! - [`http`]: the layers around every route (request id, span, metrics, timeout, body
//!   limit), problem-aware extractors, and the server loop with graceful drain.
//! - [`auth`]: Ed25519 JWTs, the signing key's life cycle, the `Caller` extractor.
//! - [`cache`]: caches invalidated by the owner of the data, by generation; in memory or shared.
//! - [`limit`]: rate limits per caller and per sign-in, in memory or in a shared store.
//! - [`health`], [`metrics`], [`docs`]: the operational endpoints every process serves.
//! - [`money`]: ISO 4217 currencies and minor-unit amounts; [`tax`]: tax classes and rates.
//! - [`redact`]: which settings' values are secrets, never shown.
//! - [`service`]: what a service crate's builder hands a composition root: its routes,
//!   consumers, projections and chores ([`service::Parts`]), and its name and API
//!   ([`service::About`]); [`housekeeping`] runs the chores.
//! - [`tls`]: the CAs outside connections trust, and telling a refused certificate apart.
//! - [`telemetry`] (the `oxcart-telemetry` crate), [`shutdown`]: logs and traces, signals
//!   and owned background tasks.

pub mod auth;
pub mod cache;
pub mod docs;
pub mod health;
pub mod housekeeping;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod money;
pub mod problem;
pub mod redact;
pub mod service;
pub mod shutdown;
pub mod signature;
pub mod tax;
pub mod tls;

pub use oxcart_telemetry as telemetry;

/// What a port's adapter may fail with.
pub use oxcart_events::store::BoxError;

pub use problem::{ApiError, FieldError, Problem, ProblemKind, ServiceError, Validator};
