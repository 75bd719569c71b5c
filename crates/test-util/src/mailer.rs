//! The mailer contract: a message handed to a mailer arrives with its `Message-ID`, and
//! handing the same one over again (a resend after a crash) is not an error. Every
//! adapter runs it through [`mailer_contract!`](crate::mailer_contract), with a way to
//! read back what arrived: the files for the file mailer, mailpit's API for SMTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use oxcart_notifications::Mailer;
use uuid::Uuid;

use crate::mailpit::Mailpit;

/// Runs the contract against what `$make` yields, as `(Outbox, guard)`. Attributes after
/// it go on every test.
#[macro_export]
macro_rules! mailer_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::contract_tests!(mailer; $make; [$(#[$meta])*];
            a_message_arrives_with_its_id_and_subject,
            sending_one_id_again_is_not_an_error,
            describe_says_where_mail_goes_and_no_secret,
        );
    };
}

/// A message as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Without the angle brackets.
    pub message_id: String,
    pub subject: String,
}

/// A mailer under test, and where to look for what it sent.
pub struct Outbox {
    pub mailer: Arc<dyn Mailer>,
    /// What has arrived for an address so far, oldest first.
    pub received: Box<dyn Fn(String) -> BoxFuture<'static, Vec<Received>> + Send + Sync>,
    /// A secret the adapter was given (an SMTP password), which it must never show.
    pub secret: Option<String>,
}

impl Outbox {
    /// The file mailer's outbox: the `.eml` files in `dir`.
    pub fn files(mailer: Arc<dyn Mailer>, dir: PathBuf) -> Self {
        let received = move |to: String| -> BoxFuture<'static, Vec<Received>> {
            let dir = dir.clone();
            Box::pin(async move { read_eml(&dir, &to) })
        };
        Self {
            mailer,
            received: Box::new(received),
            secret: None,
        }
    }

    /// An SMTP mailer's outbox: what `mailpit` received.
    pub fn mailpit(mailer: Arc<dyn Mailer>, mailpit: Mailpit, secret: Option<String>) -> Self {
        let mailpit = Arc::new(mailpit);
        let received = move |to: String| -> BoxFuture<'static, Vec<Received>> {
            let mailpit = Arc::clone(&mailpit);
            Box::pin(async move {
                mailpit
                    .to(&to)
                    .await
                    .into_iter()
                    .map(|mail| Received {
                        message_id: mail.message_id,
                        subject: mail.subject,
                    })
                    .collect()
            })
        };
        Self {
            mailer,
            received: Box::new(received),
            secret,
        }
    }

    /// Waits up to ten seconds for at least one message to `to`.
    async fn arrived(&self, to: &str) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let received = (self.received)(to.to_owned()).await;
            if !received.is_empty() || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `Message-ID` and `Subject` of every `.eml` file in `dir` addressed to `to`.
fn read_eml(dir: &std::path::Path, to: &str) -> Vec<Received> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut received = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let headers: Vec<&str> = text.split("\r\n\r\n").next().unwrap().lines().collect();
        let header = |name: &str| {
            headers
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_default()
                .to_owned()
        };
        if header("To").contains(to) {
            received.push(Received {
                message_id: header("Message-ID").trim_matches(['<', '>']).to_owned(),
                subject: header("Subject"),
            });
        }
    }
    received
}

/// A message to a fresh address, with its id.
fn message() -> (String, String, Message) {
    let to = format!("contract-{}@example.com", Uuid::now_v7().simple());
    let id = format!("{}.c0ffee@oxcart", Uuid::now_v7().simple());
    let message = Message::builder()
        .message_id(Some(format!("<{id}>")))
        .from(
            "oxcart <orders@oxcart.localhost>"
                .parse::<Mailbox>()
                .unwrap(),
        )
        .to(to.parse::<Mailbox>().unwrap())
        .subject("Your order is confirmed")
        .multipart(MultiPart::alternative_plain_html(
            "Thank you, Łukasz: 29.00 EUR.".to_owned(),
            "<p>Thank you, Łukasz: 29.00 EUR.</p>".to_owned(),
        ))
        .unwrap();
    (to, id, message)
}

pub async fn a_message_arrives_with_its_id_and_subject(outbox: Outbox) {
    let (to, id, message) = message();
    outbox.mailer.send(&id, &message).await.unwrap();
    let received = outbox.arrived(&to).await;
    assert_eq!(
        received,
        [Received {
            message_id: id,
            subject: "Your order is confirmed".into()
        }]
    );
}

/// A resend carries the same `Message-ID`: allowed, and every copy is that message (the
/// file mailer keeps one; a relay may pass both on, which mail clients recognise).
pub async fn sending_one_id_again_is_not_an_error(outbox: Outbox) {
    let (to, id, message) = message();
    outbox.mailer.send(&id, &message).await.unwrap();
    outbox.mailer.send(&id, &message).await.unwrap();
    let received = outbox.arrived(&to).await;
    assert!(!received.is_empty() && received.len() <= 2, "{received:?}");
    assert!(received.iter().all(|r| r.message_id == id), "{received:?}");
}

pub async fn describe_says_where_mail_goes_and_no_secret(outbox: Outbox) {
    let described = outbox.mailer.describe();
    assert!(!described.trim().is_empty());
    if let Some(secret) = &outbox.secret {
        assert!(!described.contains(secret.as_str()), "{described}");
    }
}
