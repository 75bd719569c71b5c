//! The webhooks HTTP API, for admins.

use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use oxcart_platform::ApiError;
use oxcart_platform::auth::Admin;
use oxcart_platform::http::{Json, Path};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::{Delivery, Endpoint, Endpoints};

pub const TAG: &str = "webhooks";

pub fn router(endpoints: Endpoints) -> OpenApiRouter {
    routes().with_state(endpoints)
}

pub fn routes() -> OpenApiRouter<Endpoints> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(delete))
        .routes(routes!(deliveries))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Where to POST each event: `https://` on the public internet (loopback and private
    /// networks only with `webhooks.allow_private`).
    #[schema(example = "https://erp.example.com/oxcart")]
    pub url: String,
    /// The event types to send, such as `order.paid`.
    #[schema(example = json!(["order.paid", "order.shipped"]))]
    pub event_types: Vec<String>,
}

/// An endpoint as registered, with its signing secret, which is shown only here.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Verifies `Oxcart-Signature`; keep it now, it is never shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}

/// Register an endpoint (admins): every event of the types it names is POSTed to it,
/// signed with the secret in the answer.
#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = TAG,
    security(("bearer" = [])),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = Registered),
        (status = 403, description = "Not an admin"),
        (status = 422, description = "`url` is not an http(s) URL on a public network, or an event type is unknown"),
    )
)]
async fn register(
    State(endpoints): State<Endpoints>,
    _admin: Admin,
    Json(request): Json<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (endpoint, secret) = endpoints
        .register(request.url.trim(), request.event_types)
        .await?;
    Ok((StatusCode::CREATED, Json(Registered { endpoint, secret })))
}

/// The registered endpoints (admins), without their secrets.
#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = TAG,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 403, description = "Not an admin"),
    )
)]
async fn list(
    State(endpoints): State<Endpoints>,
    _admin: Admin,
) -> Result<Json<EndpointList>, ApiError> {
    Ok(Json(EndpointList {
        items: endpoints.list().await?,
    }))
}

/// Stop sending to an endpoint (admins). Its delivery log stays.
#[utoipa::path(
    delete,
    path = "/api/webhooks/{id}",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such endpoint"),
    )
)]
async fn delete(
    State(endpoints): State<Endpoints>,
    _admin: Admin,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    endpoints.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's delivery log, newest first (admins): each event's status, attempts,
/// the endpoint's last answer and the last error.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}/deliveries",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such endpoint"),
    )
)]
async fn deliveries(
    State(endpoints): State<Endpoints>,
    _admin: Admin,
    Path(id): Path<Uuid>,
) -> Result<Json<DeliveryList>, ApiError> {
    Ok(Json(DeliveryList {
        items: endpoints.deliveries(id).await?,
    }))
}
