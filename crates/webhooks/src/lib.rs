//! Outbound webhooks: endpoints admins register, and every event they asked for POSTed to
//! them as JSON, signed, retried, dead-lettered and replayable.
//!
//! # Layout
//! - this module: the endpoints and their deliveries (tables `webhook_endpoints`,
//!   `webhook_deliveries`), the `[webhooks]` section, and [`build`].
//! - [`delivery`]: the consumer group `webhook-service`, which delivers each event to
//!   every endpoint that wants it, and the address check that keeps deliveries off
//!   private networks.
//! - [`http`]: `POST`/`GET /api/webhooks`, `DELETE /api/webhooks/{id}` and
//!   `GET /api/webhooks/{id}/deliveries`, for admins.
//!
//! # Delivery
//! Each delivery is `POST <url>` with the event's envelope (`GET /api/orders/{id}/events`
//! shows the same shape) and three headers: `Oxcart-Event-Id`, `Oxcart-Event-Type` and
//! `Oxcart-Signature: t=<unix time>,v1=<hex>`, an HMAC-SHA256 with the endpoint's secret
//! of `<t>.<body>` (`oxcart_platform::signature`, Stripe's scheme). A receiver checks it,
//! and refuses a `t` older than a few minutes.
//!
//! An endpoint that answers 2xx has the event; its delivery is recorded and it is never
//! sent that event again. One that fails makes the event fail for the group: the
//! consumer retries it with backoff, dead-letters it after `consumers.max_attempts`, and
//! `oxcart dlq replay` sends it again, to the endpoints that have not had it. The one
//! duplicate no sender can rule out (the receiver's 2xx lost after it acted) carries the
//! same `Oxcart-Event-Id`, so receivers drop it.

pub mod delivery;
pub mod http;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use oxcart_db::{self as db, Db};
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{FieldError, ProblemKind, ServiceError};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

pub const ABOUT: About = About {
    name: "webhooks",
    description: "Events POSTed to the endpoints admins register, signed.",
    openapi: || http::routes().into_openapi(),
};

/// The `[webhooks]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Lets endpoints on loopback and private networks be registered and called. Off by
    /// default: an admin's endpoint must not reach the services behind the firewall
    /// (server-side request forgery).
    pub allow_private: bool,
    /// How long one delivery may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Webhooks on `db`: the routes, and the consumer group that delivers.
pub fn build(db: Db, config: &WebhooksConfig) -> Result<Parts, reqwest::Error> {
    let endpoints = Endpoints {
        db,
        allow_private: config.allow_private,
    };
    let deliverer = delivery::Deliverer::new(endpoints.clone(), config)?;
    Ok(Parts::routes(http::router(endpoints)).with_handler(std::sync::Arc::new(deliverer)))
}

/// A registered endpoint, as admins see it (never its secret, but once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    /// The event types it receives.
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: Uuid,
    pub event_type: String,
    /// `DELIVERED`, or `FAILED` (retried, then dead-lettered).
    pub status: String,
    pub attempts: i64,
    /// The endpoint's HTTP status, when it answered.
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("no such webhook endpoint")]
    NotFound,
    #[error("the webhook tables hold an unreadable {0}")]
    Corrupt(String),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Invalid(_) => ProblemKind::Validation,
            Self::NotFound => ProblemKind::NotFound,
            Self::Corrupt(_) => ProblemKind::Internal,
            Self::Storage(e) => ProblemKind::of_storage(e),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        }
    }
}

/// The endpoints and their deliveries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Endpoints {
    db: Db,
    allow_private: bool,
}

/// An endpoint with the secret its deliveries are signed with.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub endpoint: Endpoint,
    pub secret: String,
}

impl Endpoints {
    /// Registers `url` for `event_types`, checked: an http(s) URL that does not lead to
    /// a private network (unless allowed), and event types oxcart publishes. Answers the
    /// endpoint and its secret, which is never shown again.
    pub async fn register(
        &self,
        url: &str,
        event_types: Vec<String>,
    ) -> Result<(Endpoint, String), Error> {
        let mut errors = Vec::new();
        if let Err(problem) = delivery::check_url(url, self.allow_private).await {
            errors.push(FieldError::body(&["url"], problem));
        }
        if event_types.is_empty() {
            errors.push(FieldError::body(
                &["eventTypes"],
                "must name at least one event type",
            ));
        }
        for (n, kind) in event_types.iter().enumerate() {
            if !known(kind) {
                errors.push(FieldError::body(
                    &["eventTypes".to_owned(), n.to_string()],
                    format!("`{kind}` is not an event type oxcart publishes"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let endpoint = Endpoint {
            id: Uuid::now_v7(),
            url: url.to_owned(),
            event_types,
            created_at: db::now(),
        };
        let secret = new_secret();
        let mut tx = self.db.begin().await?;
        db::query(
            "INSERT INTO webhook_endpoints (id, url, event_types, secret, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(endpoint.id.to_string())
        .bind(&endpoint.url)
        .bind(serde_json::to_string(&endpoint.event_types).unwrap_or_default())
        .bind(&secret)
        .bind(db::timestamp(endpoint.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint registered");
        Ok((endpoint, secret))
    }

    /// The endpoints, oldest first.
    pub async fn list(&self) -> Result<Vec<Endpoint>, Error> {
        Ok(self
            .targets()
            .await?
            .into_iter()
            .map(|t| t.endpoint)
            .collect())
    }

    /// Stops deliveries to endpoint `id`; its delivery log stays.
    pub async fn delete(&self, id: Uuid) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        let deleted = db::query(
            "UPDATE webhook_endpoints SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(db::timestamp(db::now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if deleted.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// Endpoint `id`'s deliveries, newest first (at most 100).
    pub async fn deliveries(&self, id: Uuid) -> Result<Vec<Delivery>, Error> {
        let mut reader = self.db.read().await?;
        let exists: Option<String> =
            db::query_scalar("SELECT id FROM webhook_endpoints WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *reader)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound);
        }
        let rows = db::query(
            "SELECT event_id, event_type, status, attempts, response_status, last_error, updated_at \
             FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY updated_at DESC, event_id LIMIT 100",
        )
        .bind(id.to_string())
        .fetch_all(&mut *reader)
        .await?;
        rows.iter().map(decode_delivery).collect()
    }

    /// The live endpoints with their secrets.
    pub(crate) async fn targets(&self) -> Result<Vec<Target>, Error> {
        let rows = db::query(
            "SELECT id, url, event_types, secret, created_at FROM webhook_endpoints \
             WHERE deleted_at IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&mut *self.db.read_primary().await?)
        .await?;
        rows.iter().map(decode_target).collect()
    }

    /// Whether `endpoint` has had event `event_id` (answered it 2xx).
    pub(crate) async fn delivered(&self, endpoint: Uuid, event_id: Uuid) -> Result<bool, Error> {
        let status: Option<String> = db::query_scalar(
            "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2",
        )
        .bind(endpoint.to_string())
        .bind(event_id.to_string())
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        Ok(status.as_deref() == Some("delivered"))
    }

    /// Records an attempt to deliver `event_id` to `endpoint`: its outcome, and one more
    /// attempt.
    pub(crate) async fn record(
        &self,
        endpoint: Uuid,
        (event_id, event_type): (Uuid, &str),
        outcome: &delivery::Outcome,
    ) -> Result<(), Error> {
        let (status, response, error) = match outcome {
            delivery::Outcome::Delivered { status } => {
                ("delivered", Some(i64::from(*status)), None)
            }
            delivery::Outcome::Failed { status, error } => {
                ("failed", status.map(i64::from), Some(error.as_str()))
            }
        };
        let mut tx = self.db.begin().await?;
        db::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, status, attempts, response_status, \
             last_error, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $7) \
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = excluded.status, \
             attempts = webhook_deliveries.attempts + 1, response_status = excluded.response_status, \
             last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(endpoint.to_string())
        .bind(event_id.to_string())
        .bind(event_type)
        .bind(status)
        .bind(response)
        .bind(error)
        .bind(db::timestamp(db::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Whether oxcart publishes events of `kind`.
fn known(kind: &str) -> bool {
    oxcart_events::types::CONTRACTS
        .iter()
        .any(|c| c.event_type == kind)
}

/// A new signing secret: `whsec_` and 256 random bits.
fn new_secret() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn time(row: &AnyRow, column: &str) -> Result<DateTime<Utc>, Error> {
    db::parse_timestamp(&row.try_get::<String, _>(column)?)
        .map_err(|_| Error::Corrupt(column.to_owned()))
}

fn uuid(row: &AnyRow, column: &str) -> Result<Uuid, Error> {
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|_| Error::Corrupt(column.to_owned()))
}

fn decode_target(row: &AnyRow) -> Result<Target, Error> {
    let types: String = row.try_get("event_types")?;
    Ok(Target {
        endpoint: Endpoint {
            id: uuid(row, "id")?,
            url: row.try_get("url")?,
            event_types: serde_json::from_str(&types)
                .map_err(|_| Error::Corrupt("event_types".into()))?,
            created_at: time(row, "created_at")?,
        },
        secret: row.try_get("secret")?,
    })
}

fn decode_delivery(row: &AnyRow) -> Result<Delivery, Error> {
    Ok(Delivery {
        event_id: uuid(row, "event_id")?,
        event_type: row.try_get("event_type")?,
        status: row.try_get::<String, _>("status")?.to_ascii_uppercase(),
        attempts: row.try_get("attempts")?,
        response_status: row.try_get("response_status")?,
        last_error: row.try_get("last_error")?,
        updated_at: time(row, "updated_at")?,
    })
}
