//! E-mail over a real SMTP server (mailpit, which `.ci/services` starts: STARTTLS
//! required, verified against the test CA), read back through mailpit's API as the
//! customer's mailbox would show it; dead letters and their replay through the CLI; and
//! the invoice PDF read back with `pdftotext`.
//!
//! These need servers and tools from outside Rust, so they are `#[ignore]`d in a plain
//! `cargo test`; `.ci/run` starts the servers and runs them with `-- --ignored`.

use oxcart_db as db;
use std::path::Path;
use std::time::Duration;

use oxcart::config::Config;
use oxcart_events::consumer::DeadLetters;
use oxcart_sql::DbDeadLetters;
use oxcart_test_util::mailpit::Mailpit;
use oxcart_test_util::process;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{TestApp, free_port, order_reaches};

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// Sends e-mail to `mailpit`, trusting the test CA.
pub fn sending_to(mailpit: &Mailpit) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.mail.smtp_url = Some(SecretString::from(mailpit.smtp_url.clone()));
        c.tls.ca_file = Some(mailpit.ca());
    }
}

pub async fn paid_order(app: &TestApp) -> (String, String) {
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
#[ignore = "needs mailpit (.ci/services)"]
async fn the_confirmation_goes_out_over_smtp() {
    let mailpit = Mailpit::starttls();
    let app = TestApp::spawn_with(|c| {
        sending_to(&mailpit)(c);
        c.mail.reply_to = Some("Shop support <support@example.com>".to_owned());
    })
    .await;
    let (order_id, email) = paid_order(&app).await;

    mailpit.wait_for(&email, 1, Duration::from_secs(30)).await;
    // One message: the order was paid, and nothing else happened to it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = mailpit.to(&email).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to.len(), 1);
    assert_eq!(mail.to[0].address, email);
    assert_eq!(mail.to[0].name, "Test User");
    assert!(mail.subject.contains("is confirmed"), "{}", mail.subject);
    assert_eq!(mail.header("X-Oxcart-Order-Id"), order_id);
    assert_eq!(mail.header("X-Oxcart-Template"), "order-confirmation");
    // `mail.reply_to`: replies go to the support desk, not to the sender.
    assert_eq!(
        mail.header("Reply-To"),
        "\"Shop support\" <support@example.com>"
    );
    // Text and HTML, and the invoice attached.
    assert!(
        mail.header("Content-Type").starts_with("multipart/mixed"),
        "{:?}",
        mail.headers
    );
    let year = chrono::Utc::now().format("%Y");
    assert_eq!(mail.attachments.len(), 1, "{:?}", mail.attachments);
    let invoice = &mail.attachments[0];
    assert_eq!(invoice.content_type, "application/pdf");
    assert!(
        invoice.file_name.starts_with(&format!("INV-{year}-"))
            && invoice.file_name.ends_with(".pdf"),
        "{}",
        invoice.file_name
    );
    let attached = mailpit.attachment(mail, invoice).await;
    let text = pdftotext(&attached);
    assert!(text.contains(&order_id), "{text}");
    assert!(text.contains("29.00 EUR"), "{text}");
    // The very document the API serves.
    let customer_token = app.api.token(&email, oxcart_test_util::api::PASSWORD).await;
    assert_eq!(
        attached,
        pdf(&app, &format!("/api/invoices/{order_id}"), &customer_token).await
    );
    assert!(mail.text.contains("29.00 EUR"), "{}", mail.text);
    assert!(
        mail.html.contains("29.00 EUR") && mail.html.contains("<"),
        "{}",
        mail.html
    );
    let message_id = mail.message_id.clone();
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
    assert_eq!(message_id, recorded);
    assert!(
        !app.config.data_dir.join("mail").exists(),
        "SMTP replaces the .eml files"
    );
    app.stop().await;
}

/// The customer's mailbox after three orders: one paid and shipped, one declined, one
/// paid and cancelled. Each customer-visible step is one e-mail, to the customer, with
/// its own subject and both a text and an HTML part; nothing else is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mailpit (.ci/services)"]
async fn every_customer_visible_step_is_one_email() {
    let mailpit = Mailpit::starttls();
    let app = TestApp::spawn_with(sending_to(&mailpit)).await;
    let api = &app.api;
    let admin = app.admin().await;
    let mug = api.product(&admin, "Enamel mug", 1450, "EUR", 10).await;
    let email = format!("grace-{}@example.com", uuid::Uuid::new_v4().simple());
    api.register(&email, oxcart_test_util::api::PASSWORD)
        .await
        .ok(201);
    let customer = api.token(&email, oxcart_test_util::api::PASSWORD).await;
    let place = |card: &'static str| {
        let body = json!({
            "items": [{ "productId": mug, "quantity": 1 }],
            "shippingAddress": oxcart_test_util::api::order_body(&[])["shippingAddress"],
            "paymentToken": card,
        });
        let customer = customer.clone();
        async move {
            let order = api.post("/api/orders", Some(&customer), &body).await;
            order.ok(201)["id"].as_str().unwrap().to_owned()
        }
    };
    let shipped = place("tok_success").await;
    let declined = place("tok_declined").await;
    let cancelled = place("tok_success").await;
    order_reaches(api, &customer, &shipped, "PAID").await;
    api.post(
        &format!("/api/orders/{shipped}/ship"),
        Some(&admin),
        &json!({}),
    )
    .await
    .ok(200);
    order_reaches(api, &customer, &cancelled, "PAID").await;
    api.post(
        &format!("/api/orders/{cancelled}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .ok(200);

    let expected = [
        (&shipped, "order-confirmation", "is confirmed"),
        (&shipped, "order-shipped", "is on its way"),
        (&declined, "payment-failed", "did not go through"),
        (&cancelled, "order-confirmation", "is confirmed"),
        (&cancelled, "order-cancelled", "was cancelled"),
    ];
    mailpit
        .wait_for(&email, expected.len(), Duration::from_secs(60))
        .await;
    // And no more, even a little later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = mailpit.to(&email).await;
    let mut got: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            (
                m.header("X-Oxcart-Order-Id").to_owned(),
                m.header("X-Oxcart-Template").to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(order, template, _)| ((*order).clone(), (*template).to_owned()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    for (order, template, subject) in expected {
        let mail = mails
            .iter()
            .find(|m| {
                m.header("X-Oxcart-Order-Id") == order && m.header("X-Oxcart-Template") == template
            })
            .unwrap();
        assert_eq!(
            mail.to
                .iter()
                .map(|a| a.address.as_str())
                .collect::<Vec<_>>(),
            [email.as_str()]
        );
        assert!(
            mail.subject.contains(subject),
            "{template}: {}",
            mail.subject
        );
        assert!(
            mail.text.contains("Hello Test User,"),
            "{template}: {}",
            mail.text
        );
        assert!(
            mail.html.contains("<html") && mail.html.contains("Enamel mug"),
            "{template}: {}",
            mail.html
        );
    }
    let refund = mails
        .iter()
        .find(|m| m.header("X-Oxcart-Template") == "order-cancelled")
        .unwrap();
    assert!(
        refund.text.contains("A refund of 14.50 EUR"),
        "{}",
        refund.text
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mailpit (.ci/services)"]
async fn a_mail_outage_is_dead_lettered_and_replayed_once_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: every send fails.
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.mail.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{port}")));
        c.consumers.max_attempts = 2;
        c.consumers.base_delay = Duration::from_millis(10);
        c.consumers.max_delay = Duration::from_millis(20);
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

    // The mail server is back (the relay the configuration now names): the replay sends
    // the e-mail, once.
    let mailpit = Mailpit::starttls();
    let config = dir.path().join("oxcart.toml");
    std::fs::write(
        &config,
        format!(
            "[mail]\nsmtp_url = \"{}\"\n[tls]\nca_file = \"{}\"\n",
            mailpit.smtp_url,
            mailpit.ca().display()
        ),
    )
    .unwrap();
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
    let mails = mailpit.wait_for(&email, 1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].header("X-Oxcart-Order-Id"), order_id);
    assert!(dead_letters.list(None, false).await.unwrap().is_empty());
    crate::saga::scrape_until(&app.api, |t| {
        t.contains("dead_letters{group=\"email-service\"} 0\n")
    })
    .await;

    let again = replay(letter.id.to_string()).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already replayed"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mailpit.to(&email).await.len(),
        1,
        "a replay never sends twice"
    );
    app.stop().await;
}

pub fn pdftotext(pdf: &[u8]) -> String {
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

pub async fn pdf(app: &TestApp, path: &str, token: &str) -> Vec<u8> {
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
    assert!(text.contains("Invoice"), "{text}");
    assert!(text.contains(&format!("No. INV-{year}-000001")), "{text}");
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
        line("Enamel mug", &skus[0]).ends_with("2 14.50 20% 29.00"),
        "{text}"
    );
    assert!(
        line("Desk lamp", &skus[1]).ends_with("1 49.99 20% 49.99"),
        "{text}"
    );
    let total = text
        .lines()
        .find(|l| l.trim_start().starts_with("Total"))
        .unwrap();
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
    assert!(text.contains("Credit note"), "{text}");
    assert!(text.contains(&format!("No. CN-{year}-000001")), "{text}");
    assert!(
        text.contains(&format!("Credits invoice: INV-{year}-000001")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Total") && l.contains("-78.99 EUR")),
        "{text}"
    );
    app.stop().await;
}
