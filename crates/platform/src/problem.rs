//! RFC 9457 problem details: the one shape every oxcart error takes on the wire.
//!
//! Service crates never pick HTTP status codes. Their errors implement [`ServiceError`],
//! saying which [`ProblemKind`] they are (and, for validation, which fields were wrong);
//! this module alone turns that into a status, a `type` URI and an
//! `application/problem+json` body. Keeping the mapping in one place is what makes the
//! error contract uniform across services.

use std::error::Error as StdError;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every problem type oxcart answers with.
///
/// The `type` member of a problem is `/docs#problem-<slug>`: a relative URI that resolves
/// to the section of the API documentation describing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    MalformedRequest,
    Validation,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    TooManyRequests,
    Timeout,
    Unavailable,
    Internal,
}

impl ProblemKind {
    /// How a storage failure should reach a client: an overloaded or unreachable database
    /// ([`oxcart_db::is_unreachable`]) is a 503 worth retrying; anything else is a 500.
    pub fn of_storage(error: &sqlx::Error) -> Self {
        if oxcart_db::is_unreachable(error) {
            Self::Unavailable
        } else {
            Self::Internal
        }
    }

    pub const ALL: [ProblemKind; 15] = [
        Self::MalformedRequest,
        Self::Validation,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::IdempotencyKeyReused,
        Self::TooManyRequests,
        Self::Timeout,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedRequest => StatusCode::BAD_REQUEST,
            Self::Validation | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::Validation => "validation",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition-failed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::TooManyRequests => "too-many-requests",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "Malformed request",
            Self::Validation => "Request validation failed",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict with the current state",
            Self::PreconditionFailed => "Precondition failed",
            Self::PayloadTooLarge => "Request body too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::IdempotencyKeyReused => "Idempotency key reused with a different request",
            Self::TooManyRequests => "Too many requests",
            Self::Timeout => "Request timed out",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }

    /// What the problem means and what a client should do about it (rendered in `/docs`).
    pub fn description(self) -> &'static str {
        match self {
            Self::MalformedRequest => {
                "The request could not be read: the body is not valid JSON, or a path or query \
                 parameter has the wrong form. `errors` names the parameter. Fix the request; \
                 retrying it unchanged will fail again."
            }
            Self::Validation => {
                "The request was readable but a value is missing, of the wrong type or out of \
                 range. Each entry of `errors` names the field by JSON pointer (`#/items/0/quantity`)."
            }
            Self::Unauthorized => {
                "No bearer token, or the token is invalid or expired. Obtain one from \
                 `POST /api/auth/token`."
            }
            Self::Forbidden => "The caller is authenticated but its role does not allow this.",
            Self::NotFound => {
                "No such resource, or it exists but belongs to someone else (oxcart does not \
                 reveal which)."
            }
            Self::MethodNotAllowed => "The resource exists but does not support this method.",
            Self::Conflict => {
                "The request conflicts with the resource's current state, for example cancelling \
                 an order that has already shipped, or registering an e-mail that is taken."
            }
            Self::PreconditionFailed => {
                "An `If-Match` precondition did not hold: the resource changed since it was read."
            }
            Self::PayloadTooLarge => "The request body exceeds the server's configured limit.",
            Self::UnsupportedMediaType => "The request body must be `application/json`.",
            Self::IdempotencyKeyReused => {
                "The `Idempotency-Key` was already used for a request with a different body. Use \
                 a fresh key for a new request."
            }
            Self::TooManyRequests => {
                "The caller has used up its allowance: requests to the API per second, or \
                 sign-in attempts per e-mail or per address per minute. Wait the `Retry-After` \
                 seconds before trying again; a sign-in refused this way was not checked."
            }
            Self::Timeout => {
                "The server did not finish within its request timeout. If the request was an \
                 order, retry it with the same `Idempotency-Key`: it will not be placed twice."
            }
            Self::Unavailable => {
                "A dependency is not ready, or a read could not reach the requested \
                 `min_version` in time. Retry after the `Retry-After` interval."
            }
            Self::Internal => {
                "An unexpected error. It has been logged with the `requestId` shown; retrying may \
                 help."
            }
        }
    }

    /// The problem's `type` URI.
    pub fn type_uri(self) -> String {
        format!("/docs#problem-{}", self.slug())
    }

    /// The kind a bare error status (one produced outside oxcart's own handlers, such as a
    /// routing 405) is reported as.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::MalformedRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::PRECONDITION_FAILED => Self::PreconditionFailed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::Validation,
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Self::Timeout,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            s if s.is_client_error() => Self::MalformedRequest,
            _ => Self::Internal,
        }
    }
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "/docs#problem-validation",
    "title": "Request validation failed",
    "status": 422,
    "detail": "the request has 1 invalid field",
    "instance": "/api/orders",
    "requestId": "0a6f0b5e-2b34-4a1d-9f0e-7d4c1c9a4b11",
    "errors": [{"pointer": "#/items/0/quantity", "detail": "must be between 1 and 1000"}]
}))]
pub struct Problem {
    /// A URI reference identifying the problem type; resolves to its documentation.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path that produced the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The `X-Request-Id` of the request, to quote when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Which inputs were wrong, one entry per field or parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extension members specific to the problem type.
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(kind: ProblemKind) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            errors: Vec::new(),
            extensions: Map::new(),
        }
    }
}

/// One invalid input. Exactly one of `pointer`, `parameter` and `header` says where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer into the request body, as a URI fragment (`#/items/0/quantity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Name of the path or query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Name of the request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// An error in the JSON body, at the location given by `path` segments.
    pub fn body<S: AsRef<str>>(path: &[S], detail: impl Into<String>) -> Self {
        Self {
            pointer: Some(json_pointer(path)),
            parameter: None,
            header: None,
            detail: detail.into(),
        }
    }

    pub fn parameter(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: None,
            parameter: Some(name.into()),
            header: None,
            detail: detail.into(),
        }
    }

    pub fn header(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: None,
            parameter: None,
            header: Some(name.into()),
            detail: detail.into(),
        }
    }
}

/// RFC 6901 JSON pointer in URI-fragment form: `["items", "0"]` → `#/items/0`.
pub fn json_pointer<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::from("#");
    for segment in path {
        out.push('/');
        out.push_str(&segment.as_ref().replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// Collects field errors while a request is parsed, so that a client hears of every
/// invalid field at once rather than one per attempt.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Keeps the value of `result`, or records its error against the body field at `path`.
    pub fn check<T, S: AsRef<str>>(&mut self, path: &[S], result: Result<T, String>) -> Option<T> {
        result
            .map_err(|detail| self.errors.push(FieldError::body(path, detail)))
            .ok()
    }

    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// The built value if nothing failed, else every error recorded.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        // Every `None` a build sees comes from a failed check, so this cannot be reached
        // with an empty list; answer with a generic error rather than panic if it is.
        build().ok_or_else(|| vec![FieldError::body::<&str>(&[], "is invalid")])
    }
}

/// Implemented by each crate's `Error` so the platform can answer with the right problem.
pub trait ServiceError: StdError + Send + Sync + 'static {
    fn kind(&self) -> ProblemKind;

    /// The inputs at fault, for validation errors.
    fn field_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// For transient failures: how long a client should wait before retrying. Every
    /// 503 says so (a second, unless the error knows better).
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The error type of every HTTP handler: a problem, plus the error that caused it.
/// Boxed, so that the `Result`s every handler returns stay one pointer wide on the error side.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    problem: Problem,
    headers: HeaderMap,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    pub fn new(kind: ProblemKind) -> Self {
        Self(Box::new(Inner {
            problem: Problem::new(kind),
            headers: HeaderMap::new(),
            source: None,
        }))
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.problem.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        if self.0.problem.detail.is_none() && !errors.is_empty() {
            self.0.problem.detail = Some(match errors.len() {
                1 => "the request has 1 invalid field".to_owned(),
                n => format!("the request has {n} invalid fields"),
            });
        }
        self.0.problem.errors = errors;
        self
    }

    pub fn with_extension(mut self, key: &str, value: Value) -> Self {
        self.0.problem.extensions.insert(key.to_owned(), value);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// A single invalid field or parameter.
    pub fn field(kind: ProblemKind, error: FieldError) -> Self {
        Self::new(kind).with_errors(vec![error])
    }

    pub fn problem(&self) -> &Problem {
        &self.0.problem
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl<E: ServiceError> From<E> for ApiError {
    fn from(error: E) -> Self {
        let kind = error.kind();
        let errors = error.field_errors();
        let api = Self::new(kind);
        let mut api = match kind {
            // Never leak internals; the cause is logged with the request id instead.
            ProblemKind::Internal => api,
            // Field errors say what is wrong; the detail counts them.
            _ if !errors.is_empty() && kind == ProblemKind::Validation => api.with_errors(errors),
            _ => api.with_detail(error.to_string()).with_errors(errors),
        };
        let retry_after = error.retry_after().or_else(|| {
            (kind == ProblemKind::Unavailable).then_some(std::time::Duration::from_secs(1))
        });
        if let Some(after) = retry_after {
            let seconds = after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                api = api.with_header(header::RETRY_AFTER, value);
            }
        }
        api.with_source(error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.problem.title)?;
        if let Some(detail) = &self.0.problem.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            match &self.0.source {
                Some(source) => {
                    tracing::error!(error = %ErrorChain(source.as_ref()), "request failed");
                }
                None => tracing::warn!(problem = %self, "request failed"),
            }
        } else {
            tracing::debug!(problem = %self, "request rejected");
        }
        let Inner {
            problem, headers, ..
        } = *self.0;
        let mut response = problem_response(&problem);
        response.headers_mut().extend(headers);
        response
    }
}

/// Serialises a problem with the right status and content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Displays an error with its whole `source()` chain: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_per_rfc_6901() {
        assert_eq!(
            json_pointer(&["items", "0", "quantity"]),
            "#/items/0/quantity"
        );
        assert_eq!(json_pointer(&["a/b", "c~d"]), "#/a~1b/c~0d");
        assert_eq!(json_pointer::<&str>(&[]), "#");
    }

    #[test]
    fn every_kind_has_a_distinct_slug_and_an_error_status() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
        assert!(ProblemKind::ALL.iter().all(|k| k.status().as_u16() >= 400));
    }

    #[test]
    fn validator_reports_every_failed_check() {
        let mut v = Validator::default();
        let a = v.check(&["a"], Ok::<_, String>(1));
        let b = v.check(&["items", "0", "b"], Err::<i32, _>("bad".into()));
        let c = v.check(&["c"], Err::<i32, _>("worse".into()));
        let errors = v.finish(|| Some((a?, b?, c?))).unwrap_err();
        let pointers: Vec<_> = errors.iter().filter_map(|e| e.pointer.as_deref()).collect();
        assert_eq!(pointers, ["#/items/0/b", "#/c"]);
        assert_eq!(Validator::default().finish(|| Some(5)).unwrap(), 5);
    }

    #[test]
    fn internal_errors_hide_their_message() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection to 10.0.0.3 refused")]
        struct Secret;
        impl ServiceError for Secret {
            fn kind(&self) -> ProblemKind {
                ProblemKind::Internal
            }
        }
        let api = ApiError::from(Secret);
        assert_eq!(api.problem().status, 500);
        assert_eq!(api.problem().detail, None);
    }
}
