//! The orders HTTP API.

use axum::Extension;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use oxcart_db as db;
use oxcart_events::envelope::Wire;
use oxcart_platform::auth::{Admin, Caller};
use oxcart_platform::http::page::{self, Linked, Page, decode_cursor};
use oxcart_platform::http::{Json, Path, Query, RequestContext, etag};
use oxcart_platform::metrics::Exemplars;
use oxcart_platform::telemetry::context;
use oxcart_platform::{ApiError, FieldError, ProblemKind};
use prometheus::{IntCounterVec, Opts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, PlaceOrder, ShippingAddress};
use crate::read_model::{After, Filter};
use crate::{Error, Orders};

pub const TAG: &str = "orders";
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_REASON_CHARS: usize = 500;

pub fn router(orders: Orders, metrics: OrderMetrics) -> OpenApiRouter {
    routes().layer(Extension(metrics)).with_state(orders)
}

/// `POST /api/orders` alone: the serverless `create-order` function, which may append.
pub fn create_router(orders: Orders, metrics: OrderMetrics) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(place_order))
        .layer(Extension(metrics))
        .with_state(orders)
}

/// `GET /api/orders/{id}` alone: the serverless `get-order` function, which only reads.
pub fn get_router(orders: Orders) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_order))
        .with_state(orders)
}

/// `orders_created_total{status}`: every `POST /api/orders`, by what became of it:
/// `created`, `replayed` (an idempotent retry), `rejected` (the client's error) or
/// `failed` (ours). The order-creation SLO is `failed` over all.
#[derive(Clone)]
pub struct OrderMetrics {
    created: IntCounterVec,
    exemplars: Exemplars,
}

impl OrderMetrics {
    /// The counter; `exemplars` receives the trace of each order counted.
    pub fn new(exemplars: Exemplars) -> Self {
        let created = IntCounterVec::new(
            Opts::new(
                "orders_created_total",
                "Total number of orders created, by outcome",
            ),
            &["status"],
        )
        .expect("valid metric definition");
        for status in ["created", "replayed", "rejected", "failed"] {
            created.with_label_values(&[status]);
        }
        Self { created, exemplars }
    }

    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.created.clone())
    }

    fn record(&self, outcome: &Result<Response, ApiError>) {
        let status = match outcome {
            Ok(response) if response.headers().contains_key("idempotent-replayed") => "replayed",
            Ok(_) => "created",
            Err(error) if error.status().is_client_error() => "rejected",
            Err(_) => "failed",
        };
        self.created.with_label_values(&[status]).inc();
        if let Some(trace_id) = context::current_trace_id() {
            self.exemplars
                .counted("orders_created_total", &[("status", status)], &trace_id);
        }
    }
}

/// The routes with their OpenAPI description, before the service is attached.
pub fn routes() -> OpenApiRouter<Orders> {
    OpenApiRouter::new()
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(refund_order))
        .routes(routes!(order_events))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// What to order; prices come from the catalog.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItemRequest>,
    pub shipping_address: ShippingAddress,
    /// The payment provider's token for the customer's payment method: with Stripe a
    /// PaymentMethod id (`pm_…`) from Stripe.js, never card details. The built-in
    /// simulated provider knows `tok_success`, `tok_declined`, `tok_insufficient_funds`,
    /// `tok_transient` (fails once, then succeeds on retry) and `tok_slow` (answers
    /// after a delay).
    #[schema(
        example = "tok_success",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_]+$"
    )]
    pub payment_token: String,
    /// The customer's tax id (a VAT number), printed on the invoice.
    #[schema(
        example = "PL5261040828",
        max_length = 32,
        pattern = "^[A-Za-z0-9 ./-]*$"
    )]
    pub customer_tax_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderItemRequest {
    pub product_id: Uuid,
    #[schema(minimum = 1, maximum = 1000, example = 2)]
    pub quantity: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    /// Shown to the customer and kept in the order's history.
    #[schema(max_length = 500, example = "ordered the wrong size")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundRequest {
    /// How much to give back, in minor units of the order's currency: at most what is
    /// left to refund.
    #[schema(minimum = 1, example = 500)]
    pub amount: i64,
    /// Why: shown to the customer, and kept in the order's history.
    #[schema(min_length = 1, max_length = 500, example = "arrived damaged")]
    pub reason: String,
}

/// A refund, as asked for. Payments carries it out (the payment shows it refunded,
/// `GET /api/payments?orderId=`), a credit note is issued, and the customer hears of it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    /// `REQUESTED`: accepted; the provider's refund follows.
    pub status: String,
}

/// An order's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderHistory {
    #[schema(value_type = Vec<Wire>)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Wait until the read model shows at least this version of the order (the `version`
    /// a write returned), so a client reads its own write.
    #[param(minimum = 1)]
    pub min_version: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only orders with this status.
    pub status: Option<OrderStatus>,
    /// Only this customer's orders (admins; customers always see only their own).
    pub customer_id: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ApiError::field(
            ProblemKind::MalformedRequest,
            FieldError::header(IDEMPOTENCY_KEY, "must be 1 to 255 visible ASCII characters"),
        ));
    }
    Ok(Some(key.to_owned()))
}

fn respond(status: StatusCode, order: Order) -> Response {
    let tag = etag(order.version);
    (status, [(header::ETAG, tag)], Json(order)).into_response()
}

/// Place an order.
///
/// Prices and the total come from the catalog at this moment, never from the request.
/// With an `Idempotency-Key`, a retry of the same request returns the order as first
/// placed (with `Idempotent-Replayed: true`) instead of placing another; the same key
/// with a different body is refused with 422.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = TAG,
    security(("bearer" = [])),
    params(
        ("idempotency-key" = Option<String>, Header, description = "Makes retries safe: one order per key and customer"),
        ("x-correlation-id" = Option<String>, Header, description = "Carried into the events' metadata"),
    ),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Placed (or, on a replay, placed earlier)", body = Order,
            headers(("location" = String), ("etag" = String),
                ("idempotent-replayed" = String, description = "`true` when the response replays an earlier request"))),
        (status = 422, description = "Invalid items or address, unknown product, mixed currencies, or a reused idempotency key"),
    )
)]
async fn place_order(
    State(orders): State<Orders>,
    Extension(metrics): Extension<OrderMetrics>,
    caller: Caller,
    context: RequestContext,
    headers: HeaderMap,
    request: Result<Json<PlaceOrderRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let outcome = place(orders, caller, context, headers, request).await;
    metrics.record(&outcome);
    outcome
}

async fn place(
    orders: Orders,
    caller: Caller,
    context: RequestContext,
    headers: HeaderMap,
    request: Result<Json<PlaceOrderRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let Json(request) = request?;
    let key = idempotency_key(&headers)?;
    let items = request
        .items
        .into_iter()
        .map(|item| (item.product_id, item.quantity))
        .collect();
    let command = PlaceOrder::parse(
        items,
        request.shipping_address,
        request.payment_token,
        request.customer_tax_id,
    )
    .map_err(Error::Invalid)?;
    let placed = orders
        .place(&caller, command, key.as_deref(), &context)
        .await?;
    let location = format!("/api/orders/{}", placed.order.id);
    let mut response = respond(StatusCode::CREATED, placed.order);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if placed.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// An order, to its owner or an admin.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id"), GetQuery),
    responses(
        (status = 200, description = "The order", body = Order, headers(("etag" = String))),
        (status = 404, description = "No such order, or not the caller's"),
        (status = 503, description = "The read model has not reached `min_version` in time; retry"),
    )
)]
async fn get_order(
    State(orders): State<Orders>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<GetQuery>,
) -> Result<Response, ApiError> {
    Ok(respond(
        StatusCode::OK,
        orders.get(&caller, id, query.min_version).await?,
    ))
}

/// Orders, newest first: the caller's own, or everyone's for an admin.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = TAG,
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of orders", body = Page<Order>,
            headers(("Link" = String, description = "`<…&cursor=…>; rel=\"next\"` when another page follows (RFC 8288)"))),
        (status = 403, description = "A customer asked for another customer's orders"),
    )
)]
async fn list_orders(
    State(orders): State<Orders>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Linked<Order>, ApiError> {
    let limit = page::limit(query.limit)?;
    let after: Option<After> = decode_cursor(query.cursor.as_deref())?;
    let customer_id = if caller.is_admin() {
        query.customer_id
    } else if query.customer_id.is_none_or(|id| id == caller.user_id) {
        Some(caller.user_id)
    } else {
        return Err(ApiError::new(ProblemKind::Forbidden)
            .with_detail("customers can list only their own orders"));
    };
    let filter = Filter {
        customer_id,
        status: query.status,
    };
    let rows = orders.list(&filter, after.as_ref(), limit + 1).await?;
    let page = Page::from_rows(rows, limit, |o| After {
        created_at: db::timestamp(o.created_at),
        id: o.id,
    });
    Ok(Linked(page, uri))
}

/// Cancel an order (its owner or an admin), while it is CREATED or PAID.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/cancel",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    request_body(content = Option<CancelRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "Cancelled", body = Order, headers(("etag" = String))),
        (status = 404, description = "No such order, or not the caller's"),
        (status = 409, description = "The order's status does not allow cancelling"),
    )
)]
async fn cancel_order(
    State(orders): State<Orders>,
    caller: Caller,
    context: RequestContext,
    Path(id): Path<Uuid>,
    request: Option<Json<CancelRequest>>,
) -> Result<Response, ApiError> {
    let reason = request
        .and_then(|Json(r)| r.reason)
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        let error = FieldError::body(
            &["reason"],
            format!("must be at most {MAX_REASON_CHARS} characters"),
        );
        return Err(Error::Invalid(vec![error]).into());
    }
    let order = orders.cancel(&caller, id, reason, &context).await?;
    Ok(respond(StatusCode::OK, order))
}

/// Ship a PAID order (admins).
#[utoipa::path(
    post,
    path = "/api/orders/{id}/ship",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Shipped", body = Order, headers(("etag" = String))),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such order"),
        (status = 409, description = "The order is not PAID"),
    )
)]
async fn ship_order(
    State(orders): State<Orders>,
    Admin(admin): Admin,
    context: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let order = orders.ship(admin.user_id, id, &context).await?;
    Ok(respond(StatusCode::OK, order))
}

/// Mark a SHIPPED order delivered (admins).
#[utoipa::path(
    post,
    path = "/api/orders/{id}/deliver",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Delivered", body = Order, headers(("etag" = String))),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such order"),
        (status = 409, description = "The order is not SHIPPED"),
    )
)]
async fn deliver_order(
    State(orders): State<Orders>,
    Admin(admin): Admin,
    context: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let order = orders.deliver(admin.user_id, id, &context).await?;
    Ok(respond(StatusCode::OK, order))
}

/// Refund (part of) a PAID, SHIPPED or DELIVERED order (admins).
///
/// Accepted at once (202) and carried out by payments through the provider: the
/// payment shows the refund, the customer gets a credit note and an e-mail, and
/// analytics counts revenue net of it. The refunds of an order never add up to more than
/// it was paid: asking for more than is left is a 422 naming `amount`, and nothing is
/// refunded. With an `Idempotency-Key`, a retry of the same request answers with the
/// refund it asked for, and refunds nothing more.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/refunds",
    tag = TAG,
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("idempotency-key" = Option<String>, Header, description = "Makes retries safe: one refund per key and order"),
    ),
    request_body = RefundRequest,
    responses(
        (status = 202, description = "Accepted; payments refunds it", body = Refund),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such order"),
        (status = 409, description = "The order was not paid, or was cancelled (a cancellation refunds it whole)"),
        (status = 422, description = "`amount` is more than is left to refund, or `reason` is empty, or the key was used for another refund"),
    )
)]
async fn refund_order(
    State(orders): State<Orders>,
    Admin(admin): Admin,
    context: RequestContext,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(request): Json<RefundRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let reason = request.reason.trim().to_owned();
    let mut errors = Vec::new();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        errors.push(FieldError::body(
            &["reason"],
            format!("must be 1 to {MAX_REASON_CHARS} characters"),
        ));
    }
    if request.amount < 1 {
        errors.push(FieldError::body(&["amount"], "must be at least 1"));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors).into());
    }
    let refund = orders
        .request_refund(
            admin.user_id,
            id,
            (request.amount, reason),
            key.as_deref(),
            &context,
        )
        .await?;
    let body = Refund {
        id: refund.refund_id,
        order_id: id,
        amount: refund.amount,
        currency: refund.currency,
        reason: refund.reason,
        status: "REQUESTED".to_owned(),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// An order's events, oldest first (its owner or an admin): the audit trail the order's
/// state is folded from.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/events",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The events", body = OrderHistory),
        (status = 404, description = "No such order, or not the caller's"),
    )
)]
async fn order_events(
    State(orders): State<Orders>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderHistory>, ApiError> {
    let history = orders.history(&caller, id).await?;
    Ok(Json(OrderHistory {
        events: history
            .iter()
            .map(oxcart_events::RecordedEvent::to_json)
            .collect(),
    }))
}
