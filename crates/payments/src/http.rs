//! The payments HTTP API.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use oxcart_platform::auth::Caller;
use oxcart_platform::http::{Json, Query};
use oxcart_platform::{ApiError, FieldError, ProblemKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::notices::{Applied, Notice};
use crate::stripe::{self, WebhookEvent};
use crate::{Payment, Payments};

pub const TAG: &str = "payments";

pub fn router(payments: Payments) -> OpenApiRouter {
    routes().with_state(payments)
}

pub fn routes() -> OpenApiRouter<Payments> {
    OpenApiRouter::new()
        .routes(routes!(list_payments))
        .routes(routes!(stripe_webhook))
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

/// What a webhook delivery came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// The provider's event id.
    pub id: String,
    /// `changed` (a payment moved), `nothing` (recorded; the outcome was known or is of
    /// no interest) or `duplicate` (seen before; nothing done again).
    pub outcome: String,
}

pub(crate) const SIGNATURE: &str = "Stripe-Signature";

/// Stripe's webhook: payment outcomes that arrive after the charge.
///
/// Stripe signs each delivery (`Stripe-Signature`, an HMAC-SHA256 of the timestamp and
/// the body with the endpoint's secret, `payments.stripe.webhook_secret`); a delivery
/// whose signature does not match, or whose timestamp is older than
/// `payments.stripe.webhook_tolerance`, is refused with 400 and changes nothing. Each
/// event is applied at most once: a delivery of an event seen before answers 200 and
/// does nothing. Register the endpoint for `payment_intent.succeeded` and
/// `payment_intent.payment_failed`; other types are recorded and ignored.
#[utoipa::path(
    post,
    path = "/api/payments/webhooks/stripe",
    tag = TAG,
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256>`")),
    request_body(content = Object, content_type = "application/json", description = "A Stripe event"),
    responses(
        (status = 200, description = "Received", body = WebhookReceipt),
        (status = 400, description = "The signature is missing, does not match, or is too old"),
        (status = 404, description = "Stripe is not the provider, or no webhook secret is set: Stripe retries later"),
        (status = 503, description = "The payment could not be updated now: Stripe retries later"),
    )
)]
async fn stripe_webhook(
    State(payments): State<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let Some(webhooks) = &payments.stripe_webhooks else {
        return Err(ApiError::new(ProblemKind::NotFound).with_detail(
            "this server takes no Stripe webhooks: payments.provider is not \"stripe\", \
             or payments.stripe.webhook_secret (STRIPE_WEBHOOK_SECRET) is not set",
        ));
    };
    let signature = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
    let event = stripe::verify(
        &webhooks.secret,
        signature,
        &body,
        webhooks.tolerance,
        SystemTime::now(),
    )
    .map_err(|e| {
        ApiError::field(
            ProblemKind::MalformedRequest,
            FieldError::header(SIGNATURE, e.to_string()),
        )
    })?;
    let notice = stripe_notice(&event);
    let applied = webhooks
        .notices
        .apply("stripe", &event.id, &notice)
        .await
        .map_err(|e| ApiError::new(ProblemKind::Unavailable).with_source(e))?;
    let outcome = match applied {
        Applied::Changed => "changed",
        Applied::Nothing => "nothing",
        Applied::Duplicate => "duplicate",
    };
    Ok(Json(WebhookReceipt {
        id: event.id,
        outcome: outcome.to_owned(),
    }))
}

/// What a Stripe event says in oxcart's terms.
fn stripe_notice(event: &WebhookEvent) -> Notice {
    let object = &event.data.object;
    let reference = object["id"].as_str().unwrap_or_default().to_owned();
    match event.kind.as_str() {
        "payment_intent.succeeded" => Notice::Succeeded { reference },
        "payment_intent.payment_failed" => {
            let error = &object["last_payment_error"];
            let code = error["decline_code"]
                .as_str()
                .or_else(|| error["code"].as_str())
                .unwrap_or("payment_failed")
                .to_owned();
            Notice::Failed { reference, code }
        }
        other => Notice::Other(other.to_owned()),
    }
}
