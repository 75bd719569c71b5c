//! The analytics HTTP API.

use axum::extract::State;
use chrono::{Days, NaiveDate, Utc};
use oxcart_platform::auth::Admin;
use oxcart_platform::http::{Json, Query};
use oxcart_platform::{ApiError, FieldError, ProblemKind};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Analytics, Summary};

pub const TAG: &str = "analytics";

/// The longest range one summary covers.
const MAX_DAYS: u64 = 366;

pub fn router(analytics: Analytics) -> OpenApiRouter {
    routes().with_state(analytics)
}

pub fn routes() -> OpenApiRouter<Analytics> {
    OpenApiRouter::new().routes(routes!(summary))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// First day (UTC, `YYYY-MM-DD`), included; default 29 days before `to`.
    #[param(value_type = Option<String>, format = Date, example = "2026-11-01")]
    pub from: Option<NaiveDate>,
    /// Last day (UTC), included; default today.
    #[param(value_type = Option<String>, format = Date, example = "2026-11-30")]
    pub to: Option<NaiveDate>,
}

/// Orders, revenue, average order value, top products and payment success rate over the
/// orders placed in a date range (admins).
#[utoipa::path(
    get,
    path = "/api/analytics/summary",
    tag = TAG,
    security(("bearer" = [])),
    params(SummaryQuery),
    responses(
        (status = 200, description = "The summary", body = Summary),
        (status = 403, description = "Not an admin"),
        (status = 422, description = "`from` is after `to`, or the range is longer than 366 days"),
    )
)]
async fn summary(
    State(analytics): State<Analytics>,
    _admin: Admin,
    Query(query): Query<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    let to = query.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = query
        .from
        .unwrap_or_else(|| to.checked_sub_days(Days::new(29)).unwrap_or(to));
    let invalid = |detail: &str| {
        ApiError::field(
            ProblemKind::Validation,
            FieldError::parameter("from", detail),
        )
    };
    if from > to {
        return Err(invalid("must not be after `to`"));
    }
    if (to - from).num_days() >= MAX_DAYS as i64 {
        return Err(invalid("must be at most 366 days before `to`"));
    }
    Ok(Json(analytics.summary(from, to).await?))
}
