//! Outbound webhooks: a real HTTP receiver in the test gets each event once, signed; a
//! receiver that is down has the event retried, dead-lettered and replayed once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use oxcart_events::consumer::DeadLetters;
use oxcart_platform::signature;
use oxcart_sql::DbDeadLetters;
use oxcart_test_util::process;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, free_port, order_reaches};

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    event_type: String,
    signature: Option<String>,
    body: Bytes,
}

/// An HTTP server that records what it is sent and answers 204.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

impl Receiver {
    /// Listens on `port` (0: any); its URL.
    async fn listen(&self, port: u16) -> String {
        let app = Router::new()
            .fallback(
                |State(r): State<Receiver>, headers: HeaderMap, body: Bytes| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    r.0.lock().unwrap().push(Received {
                        event_id: header("Oxcart-Event-Id").unwrap_or_default(),
                        event_type: header("Oxcart-Event-Type").unwrap_or_default(),
                        signature: header("Oxcart-Signature"),
                        body,
                    });
                    StatusCode::NO_CONTENT
                },
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let url = format!("http://{}/oxcart", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn got(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }
}

fn private_allowed(c: &mut oxcart::config::Config) {
    c.webhooks.allow_private = true;
    c.consumers.base_delay = Duration::from_millis(10);
    c.consumers.max_delay = Duration::from_millis(20);
}

async fn register(app: &TestApp, admin: &str, url: &str, types: &[&str]) -> Value {
    let reply = app
        .api
        .post(
            "/api/webhooks",
            Some(admin),
            &json!({ "url": url, "eventTypes": types }),
        )
        .await;
    reply.ok(201).clone()
}

async fn paid_order(app: &TestApp, admin: &str) -> String {
    let product = app.api.product(admin, "Mug", 1450, "EUR", 5).await;
    let (customer, _) = app.api.customer().await;
    let placed = app.api.place_order(&customer, &[(product, 1)]).await;
    let id = placed.ok(201)["id"].as_str().unwrap().to_owned();
    order_reaches(&app.api, &customer, &id, "PAID").await;
    id
}

#[tokio::test]
async fn each_event_reaches_the_endpoint_once_signed_with_its_secret() {
    let app = TestApp::spawn_with(private_allowed).await;
    let admin = app.admin().await;
    let receiver = Receiver::default();
    let url = receiver.listen(0).await;
    let endpoint = register(&app, &admin, &url, &["order.created", "order.paid"]).await;
    let secret = SecretString::from(endpoint["secret"].as_str().unwrap().to_owned());
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));

    let order = paid_order(&app, &admin).await;
    eventually("both events at the receiver", || async {
        Some(()).filter(|()| receiver.got().len() >= 2)
    })
    .await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.got();
    let types: Vec<&str> = got.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["order.created", "order.paid"],
        "each once, in order"
    );
    for received in &got {
        signature::verify(
            &secret,
            received.signature.as_deref(),
            &received.body,
            Duration::from_secs(300),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", received.event_type));
        let body: Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(body["eventId"], received.event_id.as_str());
        assert_eq!(body["aggregateId"], order.as_str());
    }
    // Signed with another secret, it would not verify.
    let forged = signature::verify(
        &SecretString::from("whsec_other"),
        got[0].signature.as_deref(),
        &got[0].body,
        Duration::from_secs(300),
        SystemTime::now(),
    );
    assert!(forged.is_err());

    // The list shows the endpoint without its secret, and the log both deliveries.
    let id = endpoint["id"].as_str().unwrap();
    let listed = app.api.get("/api/webhooks", Some(&admin)).await;
    let listed = listed.ok(200)["items"][0].clone();
    assert_eq!(listed["id"], id);
    assert!(listed.get("secret").is_none(), "{listed}");
    let log = app
        .api
        .get(&format!("/api/webhooks/{id}/deliveries"), Some(&admin))
        .await;
    let log = log.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|d| d["status"] == "DELIVERED" && d["attempts"] == 1),
        "{log:?}"
    );

    // Deleted, it gets nothing more.
    app.api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/webhooks/{id}"),
            Some(&admin),
            None,
        )
        .await
        .ok(204);
    paid_order(&app, &admin).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn private_addresses_unknown_types_and_customers_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _) = app.api.customer().await;
    let body = |url: &str, types: &[&str]| json!({ "url": url, "eventTypes": types });
    let post = |token: String, body: Value| {
        let api = app.api.clone();
        async move { api.post("/api/webhooks", Some(&token), &body).await }
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
    ] {
        post(admin.clone(), body(url, &["order.paid"]))
            .await
            .problem_at(422, "#/url");
    }
    post(
        admin.clone(),
        body("https://example.com/hook", &["order.eaten"]),
    )
    .await
    .problem_at(422, "#/eventTypes/0");
    post(
        customer.clone(),
        body("https://example.com/hook", &["order.paid"]),
    )
    .await
    .problem(403);
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_has_the_event_retried_dead_lettered_and_replayed_once() {
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        private_allowed(c);
        c.consumers.max_attempts = 2;
    })
    .await;
    let admin = app.admin().await;
    let url = format!("http://127.0.0.1:{port}/oxcart");
    let endpoint = register(&app, &admin, &url, &["order.paid"]).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    paid_order(&app, &admin).await;

    let dead_letters = DbDeadLetters(app.db.clone());
    let letters = eventually("a dead letter of webhook-service", || async {
        Some(
            dead_letters
                .list(Some("webhook-service"), false)
                .await
                .unwrap(),
        )
        .filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.event.event_type, "order.paid");
    let log = app
        .api
        .get(&format!("/api/webhooks/{id}/deliveries"), Some(&admin))
        .await;
    let failed = log.ok(200)["items"][0].clone();
    // The runner's two attempts at it, then the letter.
    assert_eq!(letters[0].attempts, 2);
    // The log has every POST that failed: those two, and one before them when the event
    // came in a polled batch with others (the batch's attempt, which the runner counts
    // as a failure but not against the event). No other event goes to this endpoint, so
    // the runner's count of the group's failures is the log's.
    let metrics = crate::saga::scrape_until(&app.api, |t| {
        t.contains("events_failed_total{group=\"webhook-service\"}")
    })
    .await;
    let tried: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("events_failed_total{group=\"webhook-service\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=3).contains(&tried), "{tried} failed attempts");
    assert_eq!(
        (failed["status"].as_str(), failed["attempts"].as_i64()),
        (Some("FAILED"), Some(tried)),
        "{failed}"
    );
    assert!(
        failed["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );

    // The receiver is back: a replay delivers it, once.
    let receiver = Receiver::default();
    receiver.listen(port).await;
    let replay = || async {
        process::run_with_env(
            Path::new(BIN),
            &[
                "dlq",
                "replay",
                &letters[0].id.to_string(),
                "--data-dir",
                app.config.data_dir.to_str().unwrap(),
                "--database-url",
                &app.config.database_url(),
            ],
            &[("OXCART_WEBHOOKS__ALLOW_PRIVATE", "true")],
        )
        .await
    };
    process::succeeded(replay().await);
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(receiver.got()[0].event_type, "order.paid");
    let again = replay().await;
    assert!(!again.status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1, "a replay never sends twice");
    let log = app
        .api
        .get(&format!("/api/webhooks/{id}/deliveries"), Some(&admin))
        .await;
    let delivered = log.ok(200)["items"][0].clone();
    assert_eq!(
        (delivered["status"].as_str(), delivered["attempts"].as_i64()),
        (Some("DELIVERED"), Some(tried + 1))
    );
    app.stop().await;
}
