//! Stripe behind the payment-provider port: PaymentIntents for charges, Refunds for
//! refunds, and the signature of Stripe's webhooks.
//!
//! A thin typed client on reqwest rather than `async-stripe`: oxcart calls three
//! endpoints, and the generated crate's thousands of types would multiply the build
//! time of the default binary, which carries this adapter so that choosing Stripe is
//! configuration, not a rebuild.
//!
//! # Exactly once
//! Every request carries an `Idempotency-Key` derived from the payment (the port's key),
//! and a retry sends the same one, so Stripe answers a retried charge with the first
//! attempt's PaymentIntent instead of making another: a timeout after Stripe charged is
//! harmless, whether the retry is this client's or a redelivered event's.
//!
//! # Failures
//! - A decline (402 `card_error`) is an answer, not a failure: `Declined` with Stripe's
//!   `decline_code` (or its `code` where it gives none).
//! - 409 (the same key in flight), 429 and 5xx, timeouts and refused connections are
//!   retried here with exponential backoff, `max_retries` times, honouring Stripe's
//!   `Stripe-Should-Retry`; then the error is [`Unavailable`], and the consumer retries the
//!   event later.
//! - Any other 4xx is oxcart's mistake (a bad key, a bad parameter): an error naming
//!   Stripe's message, which no retry mends.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use oxcart_events::store::BoxError;
use oxcart_platform::http::client::client_span;
use oxcart_platform::signature::{self, SignatureError};
use oxcart_platform::tls::TrustedCas;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument as _;

use crate::provider::{Charge, ChargeOutcome, PaymentProvider, Refund, Unavailable};

/// `[payments.stripe]`: where Stripe is, and the secrets it gives an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// The secret API key (`sk_live_…`, `sk_test_…`). `STRIPE_API_KEY` sets it too.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// The signing secret of the webhook endpoint (`whsec_…`). `STRIPE_WEBHOOK_SECRET`
    /// sets it too. Without it the webhook route refuses every delivery.
    #[serde(skip_serializing)]
    pub webhook_secret: Option<SecretString>,
    /// Stripe's API; another address for stripe-mock or a recording proxy.
    pub api_base: String,
    /// How long one request may take, connecting included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of a request Stripe could not answer (timeout, 409, 429, 5xx).
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles it.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// How old a webhook's signed timestamp may be: older deliveries are refused as
    /// replays. Stripe's libraries use five minutes.
    #[serde(with = "humantime_serde")]
    pub webhook_tolerance: Duration,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".to_owned(),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            webhook_tolerance: Duration::from_secs(300),
        }
    }
}

/// Equal settings, secrets included (compared as text: settings are compared in tests
/// and at start-up, never on a path an attacker times).
impl PartialEq for StripeConfig {
    fn eq(&self, other: &Self) -> bool {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        secret(&self.api_key) == secret(&other.api_key)
            && secret(&self.webhook_secret) == secret(&other.webhook_secret)
            && self.api_base == other.api_base
            && self.timeout == other.timeout
            && self.max_retries == other.max_retries
            && self.retry_delay == other.retry_delay
            && self.webhook_tolerance == other.webhook_tolerance
    }
}

/// Why Stripe cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "payments.provider is \"stripe\" but no API key is set: set STRIPE_API_KEY (or payments.stripe.api_key)"
    )]
    NoApiKey,
    #[error("payments.stripe.api_base `{0}` is not an http:// or https:// address")]
    Base(String),
    #[error("cannot build the Stripe client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The Stripe adapter of [`PaymentProvider`].
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: SecretString,
    max_retries: u32,
    retry_delay: Duration,
}

/// Stripe's error object (`{"error": {…}}`).
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    param: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

/// What one request came to.
enum Reply {
    Ok(Value),
    /// 402: the card (or other payment method) was refused.
    Card(ApiError),
}

/// The fields of a PaymentIntent oxcart reads.
#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    last_payment_error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
    status: Option<String>,
    failure_reason: Option<String>,
}

impl Stripe {
    pub fn new(config: &StripeConfig, cas: &TrustedCas) -> Result<Self, SetupError> {
        let key = config.api_key.clone().ok_or(SetupError::NoApiKey)?;
        let parsed = reqwest::Url::parse(&config.api_base).ok();
        if !parsed.is_some_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host()) {
            return Err(SetupError::Base(config.api_base.clone()));
        }
        let mut builder = reqwest::Client::builder().timeout(config.timeout);
        for certificate in cas.for_reqwest() {
            builder = builder.add_root_certificate(certificate);
        }
        Ok(Self {
            http: builder.build()?,
            base: config.api_base.trim_end_matches('/').to_owned(),
            key,
            max_retries: config.max_retries,
            retry_delay: config.retry_delay,
        })
    }

    /// POSTs `form` to `path` under `idempotency_key`, retrying what Stripe could not
    /// answer, each attempt a client span.
    async fn post(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, String)],
    ) -> Result<Reply, BoxError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let span = client_span("POST", path, &url);
            span.record("peer.service", "stripe-api");
            let outcome = self
                .attempt(&url, idempotency_key, form)
                .instrument(span.clone())
                .await;
            let retry = match outcome {
                Attempt::Done(reply) => return reply,
                Attempt::Retry(why) => why,
            };
            span.record("otel.status_code", "ERROR");
            if attempt >= self.max_retries {
                return Err(Unavailable(format!("Stripe, {path}: {retry}")).into());
            }
            let delay = self.retry_delay.saturating_mul(1 << attempt.min(16));
            tracing::warn!(%path, attempt, error = %retry, "Stripe did not answer; retrying with the same key");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, url: &str, idempotency_key: &str, form: &[(&str, String)]) -> Attempt {
        let sent = self
            .http
            .post(url)
            .bearer_auth(self.key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return Attempt::Retry(error.to_string()),
        };
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let should_retry = response
            .headers()
            .get("Stripe-Should-Retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return Attempt::Retry(error.to_string()),
        };
        if status.is_success() {
            return Attempt::Done(
                serde_json::from_slice(&body)
                    .map(Reply::Ok)
                    .map_err(|e| format!("Stripe answered {url} with unreadable JSON: {e}").into()),
            );
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        let transient = matches!(status.as_u16(), 409 | 429) || status.is_server_error();
        // A payment method Stripe does not know (or cannot use) is the customer's, not
        // oxcart's: a decline, like a refused card.
        let refused_method = status == 400 && error.param.as_deref() == Some("payment_method");
        match (status.as_u16(), should_retry.unwrap_or(transient)) {
            (402, _) => Attempt::Done(Ok(Reply::Card(error))),
            _ if refused_method => Attempt::Done(Ok(Reply::Card(error))),
            (_, true) => Attempt::Retry(format!("{status}: {}", describe(&error))),
            (_, false) => Attempt::Done(Err(format!(
                "Stripe refused {url} ({status}): {}",
                describe(&error)
            )
            .into())),
        }
    }
}

enum Attempt {
    Done(Result<Reply, BoxError>),
    Retry(String),
}

fn describe(error: &ApiError) -> String {
    let mut text = error.message.clone().unwrap_or_else(|| "no message".into());
    if let Some(code) = &error.code {
        text = format!("{text} [{} {code}]", error.kind);
    }
    if let Some(param) = &error.param {
        text = format!("{text} (parameter {param})");
    }
    text
}

/// Why a refused payment method was refused, in Stripe's words.
fn decline_code(error: &ApiError) -> String {
    error
        .decline_code
        .clone()
        .or_else(|| error.code.clone())
        .unwrap_or_else(|| "declined".into())
}

#[async_trait]
impl PaymentProvider for Stripe {
    #[tracing::instrument(
        name = "provider charge",
        skip_all,
        fields(otel.kind = "internal", payment.provider = "stripe", payment.currency = %charge.currency)
    )]
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, BoxError> {
        let Some(payment_method) = charge.token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(ChargeOutcome::Declined {
                code: "no_payment_method".into(),
            });
        };
        // Confirmed at once, cards only, and a card that wants the customer's
        // authentication (3-D Secure) is declined rather than left waiting: the server
        // confirms, and no one is there to authenticate.
        let form = [
            ("amount", charge.amount.to_string()),
            ("currency", charge.currency.to_ascii_lowercase()),
            ("payment_method", payment_method.to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("error_on_requires_action", "true".to_owned()),
            ("metadata[oxcart_key]", charge.idempotency_key.clone()),
        ];
        let key = format!("oxcart-charge-{}", charge.idempotency_key);
        let intent = match self.post("/v1/payment_intents", &key, &form).await? {
            Reply::Card(error) => {
                return Ok(ChargeOutcome::Declined {
                    code: decline_code(&error),
                });
            }
            Reply::Ok(body) => serde_json::from_value::<PaymentIntent>(body)?,
        };
        outcome(intent)
    }

    async fn refund(&self, refund: &Refund) -> Result<String, BoxError> {
        let form = [
            ("payment_intent", refund.charge_reference.clone()),
            ("amount", refund.amount.to_string()),
            ("metadata[oxcart_key]", refund.idempotency_key.clone()),
        ];
        let key = format!("oxcart-{}", refund.idempotency_key);
        let refunded = match self.post("/v1/refunds", &key, &form).await? {
            Reply::Ok(body) => serde_json::from_value::<RefundObject>(body)?,
            Reply::Card(error) => {
                return Err(format!("Stripe refused the refund: {}", describe(&error)).into());
            }
        };
        match refunded.status.as_deref() {
            Some("failed" | "canceled") => Err(format!(
                "Stripe's refund {} {}: {}",
                refunded.id,
                refunded.status.unwrap_or_default(),
                refunded.failure_reason.unwrap_or_default()
            )
            .into()),
            // `succeeded`, or `pending` (Stripe completes it; a failure would come back
            // as a webhook).
            _ => Ok(refunded.id),
        }
    }
}

/// What a confirmed PaymentIntent's status says of the charge.
fn outcome(intent: PaymentIntent) -> Result<ChargeOutcome, BoxError> {
    Ok(match intent.status.as_str() {
        "succeeded" => ChargeOutcome::Approved {
            reference: intent.id,
        },
        // The payment method settles later; a webhook tells the outcome.
        "processing" => ChargeOutcome::Processing {
            reference: intent.id,
        },
        "requires_payment_method" | "canceled" => ChargeOutcome::Declined {
            code: intent
                .last_payment_error
                .as_ref()
                .map_or_else(|| intent.status.clone(), decline_code),
        },
        "requires_action" => ChargeOutcome::Declined {
            code: "authentication_required".into(),
        },
        other => {
            return Err(format!(
                "Stripe left PaymentIntent {} in status `{other}`, which a confirmed card payment never has",
                intent.id
            )
            .into());
        }
    })
}

/// A webhook delivery that verified: Stripe's event id, its type and its object.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookData {
    pub object: Value,
}

/// Why a webhook delivery was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a Stripe event: {0}")]
    Body(String),
}

/// Verifies a delivery as Stripe's libraries do (`oxcart_platform::signature`: the
/// timestamped HMAC-SHA256 in `Stripe-Signature`, within `tolerance`), and reads it.
pub fn verify(
    secret: &SecretString,
    header: Option<&str>,
    body: &[u8],
    tolerance: Duration,
    now: SystemTime,
) -> Result<WebhookEvent, WebhookError> {
    signature::verify(secret, header, body, tolerance, now)?;
    serde_json::from_slice(body).map_err(|e| WebhookError::Body(e.to_string()))
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp`.
pub use oxcart_platform::signature::sign;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::UNIX_EPOCH;

    use super::*;

    const BODY: &[u8] =
        br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;

    #[test]
    fn a_signed_delivery_reads_as_its_event_and_a_forged_one_is_refused() {
        let secret = SecretString::from("whsec_test");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let header = sign(&secret, 1_700_000_000, BODY);
        let tolerance = Duration::from_secs(300);
        let event = verify(&secret, Some(&header), BODY, tolerance, at).unwrap();
        assert_eq!(
            (event.id.as_str(), event.kind.as_str()),
            ("evt_1", "payment_intent.succeeded")
        );
        assert_eq!(event.data.object["id"], "pi_1");
        let forged = sign(&SecretString::from("whsec_other"), 1_700_000_000, BODY);
        assert_eq!(
            verify(&secret, Some(&forged), BODY, tolerance, at).unwrap_err(),
            WebhookError::Signature(SignatureError::Mismatch)
        );
        let garbage = sign(&secret, 1_700_000_000, b"not json");
        assert!(matches!(
            verify(&secret, Some(&garbage), b"not json", tolerance, at),
            Err(WebhookError::Body(_))
        ));
    }
}
