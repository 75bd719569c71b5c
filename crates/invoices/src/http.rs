//! The invoices HTTP API: documents as PDF.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;
use oxcart_platform::ApiError;
use oxcart_platform::auth::Caller;
use oxcart_platform::http::Path;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::{Invoices, Which};

pub const TAG: &str = "invoices";

pub fn router(invoices: Invoices) -> OpenApiRouter {
    routes().with_state(invoices)
}

pub fn routes() -> OpenApiRouter<Invoices> {
    OpenApiRouter::new()
        .routes(routes!(get_invoice))
        .routes(routes!(get_credit_note))
        .routes(routes!(get_refund_credit_note))
}

async fn document(
    invoices: &Invoices,
    caller: &Caller,
    order_id: Uuid,
    which: Which,
) -> Result<Response, ApiError> {
    let pdf = invoices.pdf(caller, order_id, which).await?;
    let disposition = format!("inline; filename=\"{}.pdf\"", pdf.number);
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        pdf.bytes,
    )
        .into_response())
}

/// An order's invoice, as a PDF (its owner or an admin). Issued once the order is paid.
#[utoipa::path(
    get,
    path = "/api/invoices/{orderId}",
    tag = TAG,
    security(("bearer" = [])),
    params(("orderId" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The invoice", content_type = "application/pdf", body = Vec<u8>,
            headers(("content-disposition" = String, description = "`inline; filename=\"INV-2026-000001.pdf\"`"))),
        (status = 404, description = "No invoice for this order (not paid yet, or not the caller's)"),
    )
)]
async fn get_invoice(
    State(invoices): State<Invoices>,
    caller: Caller,
    Path(order_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    document(&invoices, &caller, order_id, Which::Invoice).await
}

/// An order's latest credit note, as a PDF (its owner or an admin). One is issued for
/// each refund: a paid order's cancellation, or a refund an admin made, whole or partial.
#[utoipa::path(
    get,
    path = "/api/invoices/{orderId}/credit-note",
    tag = TAG,
    security(("bearer" = [])),
    params(("orderId" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The credit note", content_type = "application/pdf", body = Vec<u8>,
            headers(("content-disposition" = String))),
        (status = 404, description = "No credit note for this order"),
    )
)]
async fn get_credit_note(
    State(invoices): State<Invoices>,
    caller: Caller,
    Path(order_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    document(&invoices, &caller, order_id, Which::LatestCreditNote).await
}

/// The credit note of one refund of an order (the refund's id is in the answer to
/// `POST /api/orders/{orderId}/refunds`), as a PDF (its owner or an admin).
#[utoipa::path(
    get,
    path = "/api/invoices/{orderId}/credit-notes/{refundId}",
    tag = TAG,
    security(("bearer" = [])),
    params(
        ("orderId" = Uuid, Path, description = "Order id"),
        ("refundId" = Uuid, Path, description = "Refund id"),
    ),
    responses(
        (status = 200, description = "The credit note", content_type = "application/pdf", body = Vec<u8>,
            headers(("content-disposition" = String))),
        (status = 404, description = "No credit note for this refund (not carried out yet, or not the caller's)"),
    )
)]
async fn get_refund_credit_note(
    State(invoices): State<Invoices>,
    caller: Caller,
    Path((order_id, refund_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    document(&invoices, &caller, order_id, Which::CreditNote(refund_id)).await
}
