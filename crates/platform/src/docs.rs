//! `/openapi.json` and `/docs`.
//!
//! The documentation page is a single self-contained HTML file compiled into the binary:
//! it renders the OpenAPI document in the browser and needs nothing downloaded, at build
//! time or at run time, so it works on an air-gapped machine.

use std::sync::Arc;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header;
use utoipa::openapi::OpenApi;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Required};
use utoipa::{PartialSchema, ToSchema};

use crate::problem::{FieldError, PROBLEM_JSON, Problem, ProblemKind};

/// Name of the bearer-token security scheme operations refer to.
pub const BEARER: &str = "bearer";

const PAGE: &str = include_str!("docs.html");

pub fn router(openapi: &OpenApi) -> Router {
    let document: Arc<str> = openapi
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
        .into();
    // The document changes only with the build: its digest is a strong validator, so a
    // client that has it gets `304 Not Modified` (`http::conventions::not_modified`).
    let etag = format!("\"{}\"", &hex(digest(document.as_bytes()))[..16]);
    let page_headers = page_headers();
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let (document, etag) = (Arc::clone(&document), etag.clone());
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json".to_owned()),
                            (header::ETAG, etag),
                        ],
                        document.to_string(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let headers = page_headers.clone();
                async move { (headers, Html(PAGE)).into_response() }
            }),
        )
}

/// The page's security headers. Its one script and one style sheet are inline, so the
/// policy allows exactly those by their digests and nothing else: no other script, no
/// framing, no requests but to this origin (the "try it" form's).
fn page_headers() -> [(header::HeaderName, String); 4] {
    let inline = |open: &str, close: &str| {
        let start = PAGE
            .find(open)
            .map(|at| at + open.len())
            .unwrap_or_default();
        let end = PAGE[start..].find(close).map_or(start, |at| start + at);
        format!(
            "'sha256-{}'",
            BASE64.encode(digest(&PAGE.as_bytes()[start..end]))
        )
    };
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline("<script>", "</script>"),
        inline("<style>", "</style>"),
    );
    [
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
    ]
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The catalogue of problem types, as the `x-problem-types` extension the docs page
/// renders (the targets of every problem's `type` URI).
pub fn problem_types() -> serde_json::Value {
    ProblemKind::ALL
        .iter()
        .map(|kind| {
            serde_json::json!({
                "slug": kind.slug(),
                "type": kind.type_uri(),
                "status": kind.status().as_u16(),
                "title": kind.title(),
                "description": kind.description(),
            })
        })
        .collect()
}

/// Completes a document assembled from the services' routers with what the shared layers
/// add to every route, so that the document describes what the server really answers:
///
/// - every error response is `application/problem+json` with the `Problem` schema;
/// - every operation can answer 500 and 503 (timeout, database unavailable), 429 with
///   `Retry-After` when it is under `/api/` (rate limits), 400 when it
///   takes parameters, 401 when it needs a token, and 413, 415 and 422 when it takes a body;
/// - the bearer scheme and the `x-problem-types` catalogue the docs page shows.
pub fn complete(openapi: &mut OpenApi) {
    for (path, item) in &mut openapi.paths.paths {
        let limited = path.starts_with("/api/");
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            complete_operation(operation, limited);
        }
    }
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    components
        .schemas
        .insert(FieldError::name().into_owned(), FieldError::schema());
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("An access token from `POST /api/auth/token`."))
                .build(),
        ),
    );
    let extensions = openapi.extensions.get_or_insert_with(Default::default);
    extensions.insert("x-problem-types".to_owned(), problem_types());
}

fn complete_operation(operation: &mut Operation, limited: bool) {
    let has_body = operation.request_body.is_some();
    let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut implied = vec![ProblemKind::Internal, ProblemKind::Unavailable];
    if has_parameters || has_body {
        implied.push(ProblemKind::MalformedRequest);
    }
    if secured {
        implied.push(ProblemKind::Unauthorized);
    }
    if has_body {
        implied.extend([
            ProblemKind::PayloadTooLarge,
            ProblemKind::UnsupportedMediaType,
            ProblemKind::Validation,
        ]);
    }
    if limited {
        implied.push(ProblemKind::TooManyRequests);
    }
    let responses = &mut operation.responses.responses;
    for kind in implied {
        responses
            .entry(kind.status().as_str().to_owned())
            .or_insert_with(|| {
                let response = ResponseBuilder::new().description(kind.title());
                let response = if kind == ProblemKind::TooManyRequests {
                    response.header(
                        "retry-after",
                        HeaderBuilder::new()
                            .schema(Object::with_type(Type::Integer))
                            .description(Some("Seconds until the caller may try again"))
                            .build(),
                    )
                } else {
                    response
                };
                RefOr::T(response.build())
            });
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            set_problem_content(response);
        }
    }
    if let Some(body) = operation.request_body.as_mut() {
        body.required = Some(Required::True);
    }
}

fn set_problem_content(response: &mut Response) {
    response.content.clear();
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                Problem::name(),
            ))))
            .build(),
    );
}
