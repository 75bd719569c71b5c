//! The payments HTTP API.

use axum::extract::State;
use oxcart_platform::ApiError;
use oxcart_platform::auth::Caller;
use oxcart_platform::http::{Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::{Payment, Payments};

pub const TAG: &str = "payments";

pub fn router(payments: Payments) -> OpenApiRouter {
    routes().with_state(payments)
}

pub fn routes() -> OpenApiRouter<Payments> {
    OpenApiRouter::new().routes(routes!(list_payments))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct PaymentsQuery {
    /// The order whose payments to show.
    pub order_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    pub items: Vec<Payment>,
}

/// The payments of an order, to its owner or an admin.
///
/// An order has at most one payment: pending until its stock is reserved, then
/// succeeded or failed, and refunded if a paid order is cancelled. Another customer's
/// order shows no payments.
#[utoipa::path(
    get,
    path = "/api/payments",
    tag = TAG,
    security(("bearer" = [])),
    params(PaymentsQuery),
    responses((status = 200, description = "The order's payments", body = PaymentList))
)]
async fn list_payments(
    State(payments): State<Payments>,
    caller: Caller,
    Query(query): Query<PaymentsQuery>,
) -> Result<Json<PaymentList>, ApiError> {
    let items = payments.for_order(&caller, query.order_id).await?;
    Ok(Json(PaymentList { items }))
}
