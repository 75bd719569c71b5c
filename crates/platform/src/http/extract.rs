//! Request extractors whose every rejection is a problem that names the offending input.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these wrappers
//! keep their behaviour but report *where* the input was wrong: a JSON pointer into the
//! body, or the name of the parameter.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::problem::{ApiError, FieldError, ProblemKind};

/// A JSON request body (or response body; it serialises like `axum::Json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::field(
                ProblemKind::UnsupportedMediaType,
                FieldError::header("content-type", "expected application/json"),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        from_json_slice(&bytes).map(Json)
    }
}

/// An optional body: a request with no body and no `Content-Type` gives `None`.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().contains_key(header::CONTENT_TYPE) {
            return <Self as FromRequest<S>>::from_request(req, state)
                .await
                .map(Some);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(None)
        } else {
            Err(ApiError::field(
                ProblemKind::UnsupportedMediaType,
                FieldError::header("content-type", "expected application/json"),
            ))
        }
    }
}

/// Who is asking and why, for the metadata of the events a request produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// `X-Request-Id`, set (or kept) by the request-id layer.
    pub request_id: String,
    /// `X-Correlation-Id` when the client sent a usable one, else the request id: it
    /// follows the request through every event it causes.
    pub correlation_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| {
                    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
                })
                .map(str::to_owned)
        };
        let request_id = header("x-request-id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let correlation_id = header("x-correlation-id").unwrap_or_else(|| request_id.clone());
        Ok(Self {
            request_id,
            correlation_id,
        })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    let kind = match rejection.status().as_u16() {
        413 => ProblemKind::PayloadTooLarge,
        _ => ProblemKind::MalformedRequest,
    };
    ApiError::new(kind).with_detail(rejection.body_text())
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON document, reporting syntax errors as 400 and shape errors as 422 with
/// the JSON pointer of the field at fault.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(|e| {
        ApiError::new(ProblemKind::MalformedRequest)
            .with_detail(format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut path = segments(error.path());
    let inner = error.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = without_position(&inner.to_string());
            if let Some(field) = named_field(&message) {
                path.push(field);
            }
            ApiError::field(ProblemKind::Validation, FieldError::body(&path, message))
        }
        _ => ApiError::new(ProblemKind::MalformedRequest)
            .with_detail(format!("the body is not valid JSON: {inner}")),
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// serde reports a missing field at its parent; pull the name out of "missing field `x`"
/// so the pointer lands on the field itself.
fn named_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Query-string parameters, rejected with the name of the parameter at fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|error| {
                let mut name = error.path().to_string();
                let message = error.into_inner().to_string();
                if let Some(field) = named_field(&message) {
                    name = field;
                }
                ApiError::field(
                    ProblemKind::MalformedRequest,
                    FieldError::parameter(name, message),
                )
            })
    }
}

/// Path parameters, rejected with the name of the parameter at fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                use axum::extract::path::ErrorKind;
                // Some errors do not say which parameter failed; when the route has only
                // one, it can only be that one.
                let names: Vec<String> = match RawPathParams::from_request_parts(parts, state).await
                {
                    Ok(raw) => raw.iter().map(|(name, _)| name.to_owned()).collect(),
                    Err(_) => Vec::new(),
                };
                let single_name = || (names.len() == 1).then(|| names[0].clone());
                let (name, detail) = match error.kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => (
                        Some(key.clone()),
                        format!("{value:?} is not a valid {}", friendly(expected_type)),
                    ),
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        (Some(key.clone()), "is not valid UTF-8".to_owned())
                    }
                    ErrorKind::ParseError {
                        value,
                        expected_type,
                    } => (
                        single_name(),
                        format!("{value:?} is not a valid {}", friendly(expected_type)),
                    ),
                    ErrorKind::Message(message) => (single_name(), message.clone()),
                    other => (single_name(), other.to_string()),
                };
                Err(ApiError::field(
                    ProblemKind::MalformedRequest,
                    FieldError::parameter(name.unwrap_or_else(|| "path".to_owned()), detail),
                ))
            }
            Err(other) => Err(ApiError::new(ProblemKind::Internal).with_source(other)),
        }
    }
}

fn friendly(type_name: &str) -> &str {
    match type_name.rsplit("::").next().unwrap_or(type_name) {
        "Uuid" => "UUID",
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "integer"
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        product_id: String,
        quantity: u32,
    }

    fn pointer_of(body: &str) -> (u16, Option<String>) {
        let error = from_json_slice::<Order>(body.as_bytes()).unwrap_err();
        let problem = error.problem();
        (
            problem.status,
            problem.errors.first().and_then(|e| e.pointer.clone()),
        )
    }

    #[test]
    fn mistyped_nested_field_is_named_by_pointer() {
        let (status, pointer) = pointer_of(r#"{"items":[{"productId":"a","quantity":"two"}]}"#);
        assert_eq!(
            (status, pointer.as_deref()),
            (422, Some("#/items/0/quantity"))
        );
    }

    #[test]
    fn missing_field_pointer_lands_on_the_field() {
        let (status, pointer) =
            pointer_of(r#"{"items":[{"productId":"a","quantity":1},{"quantity":1}]}"#);
        assert_eq!(
            (status, pointer.as_deref()),
            (422, Some("#/items/1/productId"))
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let (_, pointer) = pointer_of(r#"{"items":[],"total":5}"#);
        assert_eq!(pointer.as_deref(), Some("#/total"));
    }

    #[test]
    fn syntax_errors_are_400_without_field() {
        assert_eq!(pointer_of(r#"{"items": [}"#), (400, None));
        assert_eq!(pointer_of(""), (400, None));
        assert_eq!(pointer_of(r#"{"items":[]} trailing"#), (400, None));
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!has_json_content_type(&headers));
        for (value, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(has_json_content_type(&headers), ok, "{value}");
        }
    }
}
