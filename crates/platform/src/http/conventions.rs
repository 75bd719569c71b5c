//! What HTTP clients expect of any API, and browsers of one they call from another
//! origin: compressed bodies, `304 Not Modified` for a representation the client already
//! has, CORS for the origins configured, and request ids that are safe to echo and log.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The longest request id taken from a client; longer ones are replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's `X-Request-Id` may be kept: 1 to [`MAX_REQUEST_ID`] characters of
/// letters, digits and `-_.:`. Anything else (a megabyte, a newline meant to forge a log
/// line, a quote meant to break out of a JSON field) is replaced by a fresh id.
pub fn acceptable_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops a client's `X-Request-Id` that is not [acceptable](acceptable_request_id), so
/// that the id layer mints one.
pub async fn validate_request_id(mut request: Request, next: Next) -> Response {
    let unacceptable = request
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|id| !acceptable_request_id(id.as_bytes()));
    let repeated = request.headers().get_all("x-request-id").iter().count() > 1;
    if unacceptable || repeated {
        tracing::debug!("a client's X-Request-Id was refused and replaced");
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// Answers `304 Not Modified`, with no body, to a `GET` or `HEAD` whose `If-None-Match`
/// names the `ETag` the response carries: the client's copy is current. (Weak
/// comparison, as RFC 9110 asks of `If-None-Match`.)
pub async fn not_modified(request: Request, next: Next) -> Response {
    let conditional = matches!(*request.method(), Method::GET | Method::HEAD)
        .then(|| request.headers().get(header::IF_NONE_MATCH).cloned())
        .flatten();
    let response = next.run(request).await;
    let Some(if_none_match) = conditional else {
        return response;
    };
    let (Some(etag), StatusCode::OK) = (response.headers().get(header::ETAG), response.status())
    else {
        return response;
    };
    if !matches_any(&if_none_match, etag) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::NOT_MODIFIED;
    for gone in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
        parts.headers.remove(gone);
    }
    Response::from_parts(parts, Body::empty())
}

/// Whether the `If-None-Match` list names `etag` (or is `*`).
fn matches_any(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(list), Ok(etag)) = (if_none_match.to_str(), etag.to_str()) else {
        return false;
    };
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    list.split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == etag)
}

/// CORS for `origins` (`https://shop.example`, or `*` for any): preflights answered, and
/// what a browser script may send and read. `None` for no origins: same-origin callers
/// only, as before.
///
/// # Errors
/// The first origin that is not `*` or `scheme://host[:port]`.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut values = Vec::with_capacity(origins.len());
        for origin in origins {
            let valid = url_origin(origin);
            let value = valid
                .then(|| HeaderValue::from_str(origin).ok())
                .flatten()
                .ok_or_else(|| {
                    format!("`{origin}` is not an origin (`https://shop.example[:port]`, or `*`)")
                })?;
            values.push(value);
        }
        AllowOrigin::list(values)
    };
    let request_headers = [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("x-correlation-id"),
        HeaderName::from_static("traceparent"),
    ];
    let exposed = [
        header::ETAG,
        header::LOCATION,
        header::LINK,
        header::RETRY_AFTER,
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("idempotent-replayed"),
    ];
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers(request_headers)
            .expose_headers(exposed)
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// `scheme://host[:port]`, nothing after: what a browser sends as `Origin`.
fn url_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        assert!(acceptable_request_id(b"req-1"));
        assert!(acceptable_request_id(
            b"0f8fad5b-d9cb-469f-a165-70867728950e"
        ));
        assert!(acceptable_request_id(b"lb:1234.5_6"));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(&[b'a'; MAX_REQUEST_ID + 1]));
        assert!(!acceptable_request_id(b"a\nforged log line"));
        assert!(!acceptable_request_id(b"x\"}"));
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let tag = HeaderValue::from_static("\"3\"");
        for list in ["\"3\"", "W/\"3\"", "\"1\", \"3\"", "*"] {
            assert!(matches_any(&HeaderValue::from_static(list), &tag), "{list}");
        }
        assert!(!matches_any(&HeaderValue::from_static("\"4\""), &tag));
    }

    #[test]
    fn origins_are_checked() {
        assert!(cors(&[]).unwrap().is_none());
        assert!(
            cors(&[
                "https://shop.example".into(),
                "http://localhost:5173".into()
            ])
            .unwrap()
            .is_some()
        );
        assert!(cors(&["*".into()]).unwrap().is_some());
        let error = cors(&["https://shop.example/app".into()]).unwrap_err();
        assert!(
            error.contains("`https://shop.example/app` is not an origin"),
            "{error}"
        );
        assert!(cors(&["shop.example".into()]).is_err());
    }
}
