//! Calls to other oxcart services over HTTP, traced.
//!
//! Each call is an OpenTelemetry client span named by the route it calls
//! (`GET /api/products/{id}`), with the HTTP semantic conventions' attributes, and carries
//! that span's W3C `traceparent`, so the service called continues the caller's trace.

use std::time::Duration;

use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use crate::telemetry::context;
use crate::tls::{self, TrustedCas};

/// Why a call failed. Every variant is worth retrying later, except `Status` for a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not an http:// or https:// address")]
    Base(String),
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: TLS refused: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: unexpected body: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The OpenTelemetry client span of one outgoing call: named `METHOD template`
/// (`GET /api/products/{id}`, `POST /v1/payment_intents`), with the HTTP semantic
/// conventions' attributes. The caller records `http.response.status_code` and, on
/// failure, `otel.status_code = "ERROR"`; a call to a third party names it in
/// `peer.service` (`stripe-api`), as the specification's trace shows it.
pub fn client_span(method: &str, template: &str, url: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "client request",
        otel.name = %format!("{method} {template}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        url.full = %url,
        url.template = template,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        peer.service = tracing::field::Empty,
    );
    if let Ok(parsed) = reqwest::Url::parse(url) {
        if let Some(host) = parsed.host_str() {
            span.record("server.address", host);
        }
        if let Some(port) = parsed.port_or_known_default() {
            span.record("server.port", port);
        }
    }
    span
}

/// An HTTP client for one service, at `base` (`http://catalog:8080`, or
/// `https://catalog.shop.internal` verified against the public roots and `cas`).
#[derive(Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    base: String,
}

impl ServiceClient {
    /// `timeout` bounds each call, connecting included.
    pub fn new(base: &str, timeout: Duration, cas: &TrustedCas) -> Result<Self, ClientError> {
        let parsed = reqwest::Url::parse(base).ok();
        if !parsed.is_some_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host()) {
            return Err(ClientError::Base(base.to_owned()));
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        for certificate in cas.for_reqwest() {
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder.build().map_err(|source| ClientError::Transport {
            url: base.to_owned(),
            source,
        })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The service's base address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Reaches the service once (`GET /health/live`, which every oxcart service serves),
    /// at start-up. A certificate this client refuses is an error, since no retry mends
    /// it; a service that does not answer yet is only logged, since services start in
    /// any order.
    pub async fn check(&self) -> Result<(), ClientError> {
        let url = format!("{}/health/live", self.base);
        let Err(error) = self.http.get(&url).send().await else {
            return Ok(());
        };
        if let Some(reason) = tls::failure(&error) {
            return Err(ClientError::Tls { url, reason });
        }
        tracing::warn!(%error, %url, "the service cannot be reached yet");
        Ok(())
    }

    /// `GET` the route `template` (`/api/products/{id}`), at `path` (the template filled
    /// in): the JSON body on 2xx, `None` on 404, an error otherwise.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        template: &str,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        let url = format!("{}{path}", self.base);
        let span = client_span("GET", template, &url);
        let call = async {
            let mut request = self.http.get(&url);
            if let Some(traceparent) = context::current_traceparent() {
                request = request.header(context::TRACEPARENT, traceparent);
            }
            let response = request
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(ClientError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            let body = response
                .json::<T>()
                .await
                .map_err(|source| ClientError::Body {
                    url: url.clone(),
                    source,
                })?;
            Ok(Some(body))
        };
        let outcome = call.instrument(span.clone()).await;
        // 4xx other than 404 is the caller's mistake, still an error of the call.
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        outcome
    }
}
