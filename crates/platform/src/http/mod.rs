//! HTTP scaffolding shared by every service: the layers around the routes, the server
//! loop with graceful drain, problem-aware extractors, and the traced client services
//! call each other with.

pub mod client;
pub mod conventions;
pub mod extract;
pub mod middleware;
pub mod page;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::limit::{self, Limits};
use crate::metrics::Metrics;
use crate::problem::{ApiError, ProblemKind};

pub use extract::{Json, Path, Query, RequestContext};

/// Settings of the HTTP server: the `[http]` section of the configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A request that takes longer is answered with a 503 `timeout` problem.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Origins a browser may call the API from (`https://shop.example`, or `*` for any):
    /// CORS preflights are answered for them. Empty: same-origin callers only.
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 256 * 1024,
            shutdown_grace: Duration::from_secs(30),
            cors_origins: Vec::new(),
        }
    }
}

/// Wraps the assembled routes in the layers every request passes through.
///
/// Layers applied with `Router::layer` run after routing, which is what lets the
/// observing middleware label metrics and spans with the matched route template. The
/// outermost ones (CORS, compression, request-id checks) see every request, a preflight
/// for a route that has no `OPTIONS` included.
///
/// # Errors
/// A CORS origin that is not one, naming `http.cors_origins`.
///
/// `limits`, when given, are applied to every `/api/…` request after routing (so that a
/// 429 is counted and traced like any answer), and offered to handlers as
/// [`Client`](crate::limit::Client).
pub fn finish(
    routes: Router,
    config: &HttpConfig,
    metrics: &Metrics,
    limits: Option<Limits>,
) -> Result<Router, String> {
    let observe = middleware::Observe {
        metrics: metrics.http().clone(),
        timeout: config.request_timeout,
    };
    let cors =
        conventions::cors(&config.cors_origins).map_err(|e| format!("http.cors_origins: {e}"))?;
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let routes = match limits {
        Some(limits) => routes.layer(axum::middleware::from_fn_with_state(limits, limit::api)),
        None => routes,
    };
    let router = routes
        // Inside `observe`, so that metrics and spans count a 304 as what was sent.
        .layer(axum::middleware::from_fn(conventions::not_modified))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                ApiError::new(ProblemKind::Internal).into_response()
            },
        ))
        .layer(axum::middleware::from_fn_with_state(
            observe,
            middleware::observe,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(conventions::validate_request_id))
        .layer(CompressionLayer::new());
    Ok(match cors {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

/// A strong `ETag` for a resource version: `"3"`.
pub fn etag(version: impl std::fmt::Display) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| http::HeaderValue::from_static("\"0\""))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(ProblemKind::NotFound).with_detail(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(ProblemKind::MethodNotAllowed).with_detail(format!(
        "{} is not supported on {}",
        request.method(),
        request.uri().path()
    ))
}

/// Serves until `shutdown` fires, then stops accepting and lets in-flight requests finish
/// for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let drained = shutdown.clone();
    // With the peer's address, which rate limits key anonymous callers by.
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { drained.cancelled().await });
    let server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; closing them");
            Ok(())
        }
    }
}
