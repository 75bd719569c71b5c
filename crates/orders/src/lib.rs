//! Orders, event sourced, with a separate read side (CQRS).
//!
//! # Layout
//! - [`domain`]: the aggregate: commands, events, the state machine, the fold. No I/O.
//! - [`service`]: the command handler (load, decide, append at the expected version,
//!   re-decide on conflict) and the query entry points.
//! - [`read_model`]: `order_read_model` and `order_item_read_model`, the projection that
//!   feeds them from the event store, and the rebuild.
//! - [`saga`]: the consumer that moves orders on when stock and payments reply.
//! - [`housekeeping`]: the chore that cancels an order left unpaid past `payment_timeout`.
//! - [`remote`]: the catalog port over HTTP, for when the catalog is another service.
//! - [`cached_catalog`]: the catalog port through the cache of product snapshots.
//! - [`http`]: `POST /api/orders` (with `Idempotency-Key`), reads, cancel, ship, deliver,
//!   history.
//! - [`parts`]: [`build`], the service from its ports and its `[orders]` section
//!   ([`OrdersConfig`]).
//!
//! The write side never reads the read model and the read model is never written but by
//! its projection: the event store is the one source of truth.

pub mod cached_catalog;
pub mod domain;
pub mod housekeeping;
pub mod http;
pub mod parts;
pub mod read_model;
pub mod remote;
pub mod saga;
pub mod service;

use std::time::Duration;

use oxcart_events::store::BoxError;
use oxcart_platform::{FieldError, ProblemKind, ServiceError};
use serde::{Deserialize, Serialize};

pub use parts::{ABOUT, OrdersService, Ports, ReadSide, build};
pub use service::{OrderSource, Orders, Placed, ProductCatalog, Reaction};

/// The `[orders]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// How long a read with `min_version` waits for the read model to catch up.
    #[serde(with = "humantime_serde")]
    pub read_wait: Duration,
    /// How long one call to the catalog service may take (`RemoteCatalog`, when orders
    /// price from a catalog elsewhere): well inside a request's budget, the Lambda's 9 s
    /// included, so that a slow catalog is reported as such (503), not as the request's
    /// own timeout.
    #[serde(with = "humantime_serde")]
    pub catalog_timeout: Duration,
    /// `http://catalog:8080`: price orders through the catalog service over HTTP instead
    /// of from its tables. For a split where orders and catalog do not share a database
    /// schema.
    pub catalog_url: Option<String>,
    /// An order whose payment has not settled this long after it was placed is
    /// cancelled ("not paid in time"): its stock goes back on sale, the customer gets the
    /// cancellation e-mail, and a payment still pending is cancelled (or, if it went
    /// through meanwhile, refunded). 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub payment_timeout: Duration,
    /// How long an `Idempotency-Key` answers with the order it placed; past it, the same
    /// key places a new order.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
}

impl Default for OrdersConfig {
    /// The one statement of these defaults: the server's configuration and the Lambda
    /// functions both start from it.
    fn default() -> Self {
        Self {
            read_wait: Duration::from_secs(2),
            catalog_timeout: Duration::from_secs(5),
            catalog_url: None,
            payment_timeout: Duration::from_secs(30 * 60),
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] domain::Refused),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the order kept changing while this request was applied; retry it")]
    Contended,
    #[error("the order is at version {current}; version {requested} does not exist yet")]
    VersionAhead { requested: u64, current: u64 },
    #[error("the read model has not caught up with the requested version yet")]
    Lagging,
    #[error("the catalog cannot be reached")]
    Catalog(#[source] BoxError),
    #[error("the event store failed")]
    Store(#[from] oxcart_events::Error),
    #[error("an order's history cannot be read")]
    History(#[from] domain::HistoryError),
    #[error("{0} is unreadable")]
    Corrupt(String),
    #[error("the read model failed")]
    ReadModel(#[from] sqlx::Error),
    /// A read model outside SQL (DynamoDB in the serverless mode) failed.
    #[error("the read model cannot be reached")]
    Views(#[source] BoxError),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Invalid(_) => ProblemKind::Validation,
            Self::NotFound => ProblemKind::NotFound,
            Self::Refused(_) | Self::Contended => ProblemKind::Conflict,
            Self::IdempotencyKeyReused => ProblemKind::IdempotencyKeyReused,
            Self::VersionAhead { .. } => ProblemKind::MalformedRequest,
            Self::Lagging | Self::Catalog(_) | Self::Views(_) => ProblemKind::Unavailable,
            Self::Store(oxcart_events::Error::Unavailable(_)) => ProblemKind::Unavailable,
            Self::Store(oxcart_events::Error::Conflict { .. }) => ProblemKind::Conflict,
            Self::Store(_) | Self::History(_) | Self::Corrupt(_) => ProblemKind::Internal,
            Self::ReadModel(e) => ProblemKind::of_storage(e),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::IdempotencyKeyReused => vec![FieldError::header(
                "idempotency-key",
                "was used for a different request",
            )],
            Self::VersionAhead { .. } => vec![FieldError::parameter(
                "min_version",
                "is ahead of the order",
            )],
            _ => Vec::new(),
        }
    }
}
