//! E-mail over a real SMTP server (aiosmtpd, which the test starts), dead letters and
//! their replay through the CLI, and the invoice PDF read back with `pdftotext`.
//!
//! These need tools from outside Rust, so they are `#[ignore]`d in a plain `cargo test`;
//! `.ci/run` installs the tools and runs them with `-- --ignored`.

use oxcart_platform::db;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use oxcart_events::consumer::DeadLetters;
use oxcart_sql::DbDeadLetters;
use oxcart_test_util::process;
use secrecy::SecretString;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// aiosmtpd, storing every message it accepts in a Maildir.
struct SmtpServer {
    _child: Child,
    maildir: PathBuf,
}

impl SmtpServer {
    async fn start(port: u16, dir: &Path) -> Self {
        let python = std::env::var("OXCART_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let maildir = dir.join("maildir");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {python} -m aiosmtpd ({e}); pip install aiosmtpd")
            });
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    _child: child,
                    maildir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not listen on {port}; is it installed for {python}?");
    }

    fn messages(&self) -> Vec<String> {
        let mut messages = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for entry in entries {
                    messages.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
                }
            }
        }
        messages
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..300 {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} messages, got {}", self.messages().len());
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{message}"))
        .trim()
}

async fn paid_order(app: &TestApp) -> (String, String) {
    let api = &app.api;
    let admin = app.admin().await;
    let mug = api.product(&admin, "Enamel mug", 1450, "EUR", 10).await;
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    api.register(&email, oxcart_test_util::api::PASSWORD)
        .await
        .ok(201);
    let customer = api.token(&email, oxcart_test_util::api::PASSWORD).await;
    let order = api.place_order(&customer, &[(mug, 2)]).await;
    (order.ok(201)["id"].as_str().unwrap().to_owned(), email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs aiosmtpd (pip install aiosmtpd); .ci/run runs it"]
async fn the_confirmation_goes_out_over_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = SmtpServer::start(port, dir.path()).await;
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{port}")));
    })
    .await;
    let (order_id, email) = paid_order(&app).await;

    let messages = smtp.wait_for(1).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(header(message, "To"), format!("\"Test User\" <{email}>"));
    assert!(header(message, "Subject").contains("is confirmed"));
    assert_eq!(header(message, "X-Oxcart-Order-Id"), order_id);
    assert!(message.contains("multipart/alternative"));
    assert!(message.contains("text/plain") && message.contains("text/html"));
    assert!(message.contains("29.00 EUR"), "{message}");
    let message_id = header(message, "Message-ID");
    // The consumer records the message in the transaction that follows the sending, so
    // the row may land a moment after the server has the message.
    let mut recorded: Option<String> = None;
    for _ in 0..100 {
        recorded = db::query_scalar("SELECT message_id FROM notifications WHERE order_id = $1")
            .bind(&order_id)
            .fetch_optional(&mut *app.db.read().await.unwrap())
            .await
            .unwrap();
        if recorded.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded = recorded.expect("the message is recorded");
    assert_eq!(message_id, format!("<{recorded}>"));
    assert!(
        !app.config.data_dir.join("mail").exists(),
        "SMTP replaces the .eml files"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs aiosmtpd (pip install aiosmtpd); .ci/run runs it"]
async fn a_mail_outage_is_dead_lettered_and_replayed_once_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here yet: every send fails.
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{port}")));
        c.consumer_max_attempts = 2;
        c.consumer_retry_base = Duration::from_millis(10);
        c.consumer_retry_max = Duration::from_millis(20);
    })
    .await;
    let (order_id, email) = paid_order(&app).await;

    let dead_letters = DbDeadLetters(app.db.clone());
    let mut letters = Vec::new();
    for _ in 0..300 {
        letters = dead_letters
            .list(Some("email-service"), false)
            .await
            .unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters.len(), 1, "the confirmation should be parked");
    let letter = &letters[0];
    assert_eq!(letter.event.event.event_type, "order.paid");
    assert_eq!(letter.attempts, 2);
    let parked = "dead_letters{group=\"email-service\"} 1";
    let text = crate::saga::scrape_until(&app.api, |t| t.contains(parked)).await;
    assert!(text.contains("events_dead_lettered_total{group=\"email-service\"} 1"));
    // The consumers behind it went on: the order is invoiced regardless.
    let customer = app.api.token(&email, oxcart_test_util::api::PASSWORD).await;
    let invoice = app
        .api
        .client()
        .get(app.api.url(&format!("/api/invoices/{order_id}")))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(invoice.status(), 200);

    let listed = process::run(
        Path::new(BIN),
        &[
            "dlq",
            "list",
            "--json",
            "--data-dir",
            app.config.data_dir.to_str().unwrap(),
            "--database-url",
            &app.config.database_url(),
        ],
        None,
    )
    .await;
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(line["id"], json!(letter.id));
    assert_eq!(line["group"], "email-service");

    // The mail server is back: the replay sends the e-mail, once.
    let smtp = SmtpServer::start(port, dir.path()).await;
    let config = dir.path().join("oxcart.toml");
    std::fs::write(&config, format!("smtp_url = \"smtp://127.0.0.1:{port}\"\n")).unwrap();
    let replay = |id: String| {
        let (data, config) = (app.config.data_dir.clone(), config.clone());
        let database = app.config.database_url();
        async move {
            process::run(
                Path::new(BIN),
                &[
                    "dlq",
                    "replay",
                    &id,
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--database-url",
                    &database,
                    "--config",
                    config.to_str().unwrap(),
                ],
                None,
            )
            .await
        }
    };
    let replayed = replay(letter.id.to_string()).await;
    process::succeeded(replayed);
    let messages = smtp.wait_for(1).await;
    assert_eq!(header(&messages[0], "X-Oxcart-Order-Id"), order_id);
    assert!(dead_letters.list(None, false).await.unwrap().is_empty());
    crate::saga::scrape_until(&app.api, |t| {
        t.contains("dead_letters{group=\"email-service\"} 0\n")
    })
    .await;

    let again = replay(letter.id.to_string()).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already replayed"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1, "a replay never sends twice");
    app.stop().await;
}

fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("document.pdf");
    std::fs::write(&path, pdf).unwrap();
    let output = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (Debian poppler-utils)");
    let output = process::succeeded(output);
    String::from_utf8(output.stdout).unwrap()
}

async fn pdf(app: &TestApp, path: &str, token: &str) -> Vec<u8> {
    for _ in 0..300 {
        let response = app
            .api
            .client()
            .get(app.api.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            assert_eq!(response.headers()["content-type"], "application/pdf");
            return response.bytes().await.unwrap().to_vec();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pdftotext (Debian poppler-utils); .ci/run runs it"]
async fn invoices_and_credit_notes_are_real_pdfs() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let admin = app.admin().await;
    let mug = api.product(&admin, "Enamel mug", 1450, "EUR", 10).await;
    let lamp = api.product(&admin, "Desk lamp", 4999, "EUR", 10).await;
    let (customer, _) = api.customer().await;
    let order = api.place_order(&customer, &[(mug, 2), (lamp, 1)]).await;
    let order_id = order.ok(201)["id"].as_str().unwrap().to_owned();
    let skus: Vec<String> = order.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap().to_owned())
        .collect();

    let text = pdftotext(&pdf(&app, &format!("/api/invoices/{order_id}"), &customer).await);
    let year = chrono::Utc::now().format("%Y");
    assert!(
        text.contains(&format!("Invoice INV-{year}-000001")),
        "{text}"
    );
    assert!(text.contains(&order_id));
    let line = |name: &str, sku: &str| {
        assert!(text.contains(&format!("SKU {sku}")), "{text}");
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("Enamel mug", &skus[0]).ends_with("2 14.50 EUR 29.00 EUR"),
        "{text}"
    );
    assert!(
        line("Desk lamp", &skus[1]).ends_with("1 49.99 EUR 49.99 EUR"),
        "{text}"
    );
    let total = text.lines().find(|l| l.contains("Total")).unwrap();
    assert!(total.contains("78.99 EUR"), "{text}");
    // Another customer cannot read it.
    let (stranger, _) = api.customer().await;
    let hidden = api
        .get(&format!("/api/invoices/{order_id}"), Some(&stranger))
        .await;
    hidden.problem(404);

    // Cancelling the paid order refunds it and credits the invoice.
    api.post(
        &format!("/api/orders/{order_id}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .ok(200);
    let text = pdftotext(
        &pdf(
            &app,
            &format!("/api/invoices/{order_id}/credit-note"),
            &customer,
        )
        .await,
    );
    assert!(
        text.contains(&format!("Credit note CN-{year}-000001")),
        "{text}"
    );
    assert!(text.contains(&format!("Credits invoice INV-{year}-000001")));
    assert!(
        text.lines()
            .any(|l| l.contains("Total") && l.contains("-78.99 EUR")),
        "{text}"
    );
    app.stop().await;
}
