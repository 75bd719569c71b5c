//! Stripe for tests: stripe-mock, Stripe's official mock server, behind a front that
//! adds the behaviour stripe-mock leaves out.
//!
//! stripe-mock (started by `.ci/services`, at `OXCART_TEST_STRIPE_MOCK`) checks every
//! request against Stripe's OpenAPI document and answers with a fixture of the right
//! shape, but it keeps no state and decides nothing: every PaymentIntent comes back
//! `requires_payment_method`, every idempotency key is new. So every request goes
//! through stripe-mock first (a parameter Stripe would refuse is refused, with Stripe's
//! message), and then this front, in the test's process, does what Stripe does and the
//! mock cannot:
//! - a confirmed PaymentIntent's outcome, by Stripe's test payment methods:
//!   `pm_card_visa` succeeds, `pm_card_chargeDeclined` and
//!   `pm_card_chargeDeclinedInsufficientFunds` are declined with a 402 `card_error`
//!   carrying Stripe's decline code, an unknown `pm_…` is a 400 naming `payment_method`;
//! - idempotency: a key seen before is answered with its first answer
//!   (`Idempotent-Replayed: true`), so a retried charge makes no second PaymentIntent;
//! - refunds that cannot exceed what is left of the charge;
//! - faults a test queues: a slow answer (after the work is done, as a network that
//!   drops the answer would), a status (429, 500) before any work, or a PaymentIntent
//!   left `processing` for a webhook to settle.
//!
//! What it counts (requests, PaymentIntents made, refunds) is what the test asserts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The address of stripe-mock, if `.ci/services` started one.
pub fn mock_url() -> Option<String> {
    std::env::var("OXCART_TEST_STRIPE_MOCK").ok()
}

/// A fault the front applies to the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Do the work, then hold the answer this long (past the client's timeout).
    Slow(Duration),
    /// Answer with this status and Stripe's error shape, doing nothing.
    Status(u16),
    /// Leave the PaymentIntent `processing`: its outcome comes by webhook.
    Processing,
}

/// One request as the front saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: Vec<(String, String)>,
}

#[derive(Default)]
struct Books {
    faults: VecDeque<Fault>,
    seen: Vec<Seen>,
    /// Answers by idempotency key.
    answers: HashMap<String, (u16, Value)>,
    intents: Vec<Value>,
    refunds: Vec<Value>,
}

#[derive(Clone)]
struct Front {
    mock: String,
    http: reqwest::Client,
    books: Arc<Mutex<Books>>,
}

/// A running front; stops with the test's runtime.
pub struct StripeFront {
    pub url: String,
    books: Arc<Mutex<Books>>,
}

impl StripeFront {
    /// A front on a free port before the stripe-mock at `mock`.
    pub async fn start(mock: &str) -> Self {
        let books = Arc::new(Mutex::new(Books::default()));
        let front = Front {
            mock: mock.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            books: Arc::clone(&books),
        };
        let app = Router::new().fallback(handle).with_state(front);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, books }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().expect("the front's books")
    }

    /// Queues `fault` for the next request.
    pub fn fault(&self, fault: Fault) {
        self.books().faults.push_back(fault);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.books().seen.clone()
    }

    /// The PaymentIntents made (a replayed key makes none).
    pub fn intents(&self) -> Vec<Value> {
        self.books().intents.clone()
    }

    /// The refunds made.
    pub fn refunds(&self) -> Vec<Value> {
        self.books().refunds.clone()
    }
}

fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (u16, Value) {
    let mut error = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    (status, json!({ "error": error }))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn handle(
    State(front): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let fault = {
        let mut books = front.books.lock().expect("the front's books");
        books.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            form: form.clone(),
        });
        books.faults.pop_front()
    };
    if let Some(Fault::Status(status)) = fault {
        let (status, body) = error(
            status,
            "api_error",
            None,
            "injected by the test's front",
            None,
        );
        return reply(status, &body, false);
    }
    let replayed = key.as_ref().and_then(|key| {
        front
            .books
            .lock()
            .expect("the front's books")
            .answers
            .get(key)
            .cloned()
    });
    let (status, answer, replayed) = match replayed {
        Some((status, answer)) => (status, answer, true),
        None => {
            let (status, answer) = front
                .answer(&method, &uri, &headers, &body, &form, fault.as_ref())
                .await;
            // Stripe keeps the answer of a request that began to execute: not one that
            // failed its parameters' validation (400).
            if let (Some(key), true) = (&key, status != 400) {
                front
                    .books
                    .lock()
                    .expect("the front's books")
                    .answers
                    .insert(key.clone(), (status, answer.clone()));
            }
            (status, answer, false)
        }
    };
    if let Some(Fault::Slow(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    reply(status, &answer, replayed)
}

fn reply(status: u16, body: &Value, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body.clone())).into_response();
    if replayed {
        response.headers_mut().insert(
            "Idempotent-Replayed",
            "true".parse().expect("a header value"),
        );
    }
    response
}

impl Front {
    /// Stripe's answer: stripe-mock's, then Stripe's behaviour on top.
    async fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        form: &[(String, String)],
        fault: Option<&Fault>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{}", self.mock, uri))
            .body(body.clone());
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "stripe-version",
        ] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let (status, mocked) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
            Err(e) => return error(502, "api_error", None, &format!("stripe-mock: {e}"), None),
        };
        if status != 200 {
            // stripe-mock refused the request as Stripe would: its answer stands.
            return (status, mocked);
        }
        let path = uri.path();
        match (method.as_str(), path) {
            ("POST", "/v1/payment_intents") => self.confirm(mocked, form, fault),
            ("POST", "/v1/refunds") => self.refund(mocked, form),
            _ => (200, mocked),
        }
    }

    fn confirm(
        &self,
        mut intent: Value,
        form: &[(String, String)],
        fault: Option<&Fault>,
    ) -> (u16, Value) {
        let mut books = self.books.lock().expect("the front's books");
        let n = books.intents.len() + 1;
        let id = format!("pi_front{n:05}");
        intent["id"] = json!(id);
        intent["client_secret"] = json!(format!("{id}_secret_front"));
        intent["amount"] = json!(field(form, "amount").and_then(|a| a.parse::<i64>().ok()));
        intent["currency"] = json!(field(form, "currency"));
        intent["amount_refunded"] = json!(0);
        let method = field(form, "payment_method").unwrap_or_default();
        intent["payment_method"] = json!(method);
        intent["last_payment_error"] = Value::Null;
        let decline = match method {
            "pm_card_chargeDeclined" => Some("generic_decline"),
            "pm_card_chargeDeclinedInsufficientFunds" => Some("insufficient_funds"),
            "pm_card_visa" => None,
            other => {
                return error(
                    400,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such PaymentMethod: '{other}'"),
                    Some("payment_method"),
                );
            }
        };
        let answer = match (decline, fault) {
            (Some(code), _) => {
                let failure = json!({ "type": "card_error", "code": "card_declined",
                                      "decline_code": code, "message": "Your card was declined." });
                intent["status"] = json!("requires_payment_method");
                intent["last_payment_error"] = failure.clone();
                let mut body = failure;
                body["payment_intent"] = intent.clone();
                (402, json!({ "error": body }))
            }
            (None, Some(Fault::Processing)) => {
                intent["status"] = json!("processing");
                (200, intent.clone())
            }
            (None, _) => {
                intent["status"] = json!("succeeded");
                intent["amount_received"] = intent["amount"].clone();
                intent["latest_charge"] = json!(format!("ch_front{n:05}"));
                (200, intent.clone())
            }
        };
        books.intents.push(intent);
        answer
    }

    fn refund(&self, mut refund: Value, form: &[(String, String)]) -> (u16, Value) {
        let mut books = self.books.lock().expect("the front's books");
        let id = field(form, "payment_intent").unwrap_or_default();
        let Some(intent) = books.intents.iter_mut().find(|i| i["id"] == id) else {
            return error(
                400,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such payment_intent: '{id}'"),
                Some("payment_intent"),
            );
        };
        if intent["status"] != "succeeded" {
            return error(
                400,
                "invalid_request_error",
                Some("charge_not_refundable"),
                "This PaymentIntent has no successful charge to refund.",
                Some("payment_intent"),
            );
        }
        let charged = intent["amount"].as_i64().unwrap_or(0);
        let refunded = intent["amount_refunded"].as_i64().unwrap_or(0);
        let amount = field(form, "amount")
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(charged - refunded);
        if refunded >= charged {
            return error(
                400,
                "invalid_request_error",
                Some("charge_already_refunded"),
                "The charge has already been refunded.",
                None,
            );
        }
        if amount > charged - refunded {
            return error(
                400,
                "invalid_request_error",
                None,
                &format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({})",
                    charged - refunded
                ),
                Some("amount"),
            );
        }
        intent["amount_refunded"] = json!(refunded + amount);
        let n = books.refunds.len() + 1;
        refund["id"] = json!(format!("re_front{n:05}"));
        refund["amount"] = json!(amount);
        refund["payment_intent"] = json!(id);
        refund["status"] = json!("succeeded");
        books.refunds.push(refund.clone());
        (200, refund)
    }
}
