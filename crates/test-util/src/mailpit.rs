//! mailpit, as `.ci/services` starts it: the SMTP server the mail tests send to, and its
//! HTTP API to read back what arrived, as a mailbox would show it.
//!
//! Two servers: one that requires STARTTLS (`OXCART_TEST_SMTP`, read at
//! `OXCART_TEST_MAILPIT`) and one with implicit TLS and a password
//! (`OXCART_TEST_SMTPS`, `OXCART_TEST_SMTPS_USER`, `…_PASSWORD`; read at
//! `OXCART_TEST_MAILPIT_SMTPS`). Both present the test CA's certificate. They are shared
//! by every test, so a test reads only the mail sent to addresses of its own.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::services::{ca, var};

pub struct Mailpit {
    api: String,
    http: reqwest::Client,
    /// The `SMTP_URL` that reaches this server, CA aside.
    pub smtp_url: String,
}

/// One message as mailpit parsed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mail {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "MessageID")]
    pub message_id: String,
    pub to: Vec<Address>,
    pub subject: String,
    pub text: String,
    #[serde(rename = "HTML")]
    pub html: String,
    /// The files attached, as mailpit lists them.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Every header, by name, as sent.
    #[serde(skip)]
    pub headers: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    #[serde(rename = "PartID")]
    pub part_id: String,
    pub file_name: String,
    pub content_type: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Address {
    pub name: String,
    pub address: String,
}

impl Mail {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|values| values.first())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

#[derive(Deserialize)]
struct Found {
    messages: Vec<Summary>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(rename = "ID")]
    id: String,
}

impl Mailpit {
    /// The server that requires STARTTLS: `smtp://127.0.0.1:1025?tls=required`.
    pub fn starttls() -> Self {
        Self {
            api: var("OXCART_TEST_MAILPIT"),
            http: reqwest::Client::new(),
            smtp_url: format!("smtp://{}?tls=required", var("OXCART_TEST_SMTP")),
        }
    }

    /// The server with implicit TLS and a password: `smtps://user:password@127.0.0.1:1465`.
    pub fn smtps() -> Self {
        Self {
            api: var("OXCART_TEST_MAILPIT_SMTPS"),
            http: reqwest::Client::new(),
            smtp_url: format!(
                "smtps://{}:{}@{}",
                var("OXCART_TEST_SMTPS_USER"),
                var("OXCART_TEST_SMTPS_PASSWORD"),
                var("OXCART_TEST_SMTPS")
            ),
        }
    }

    /// The CA the servers' certificate is signed by, for `tls_ca_file`.
    pub fn ca(&self) -> std::path::PathBuf {
        ca()
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let url = format!("{}{path}", self.api);
        // A request that never got an answer is tried again: the tests poll this API
        // many times a second, and one dropped keep-alive connection is not what they
        // test (CI lost a run to one). A server that stays away still fails the test.
        let mut attempt = 1;
        let reply = loop {
            match self.http.get(&url).send().await {
                Ok(reply) => break reply,
                Err(e) if attempt < 3 => {
                    eprintln!("mailpit's API at {url}, attempt {attempt}: {e:?}");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("mailpit's API at {url}: {e:?}"),
            }
        };
        assert!(
            reply.status().is_success(),
            "{url} answered {}",
            reply.status()
        );
        reply
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: unexpected answer: {e}"))
    }

    /// The bytes of `attachment` of `mail`, as the customer would save it.
    pub async fn attachment(&self, mail: &Mail, attachment: &Attachment) -> Vec<u8> {
        let url = format!(
            "{}/api/v1/message/{}/part/{}",
            self.api, mail.id, attachment.part_id
        );
        let reply = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert!(
            reply.status().is_success(),
            "{url} answered {}",
            reply.status()
        );
        reply
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .to_vec()
    }

    /// Every message sent to `address`, oldest first.
    pub async fn to(&self, address: &str) -> Vec<Mail> {
        let query: String = url_encode(&format!("to:\"{address}\""));
        let found: Found = self.get(&format!("/api/v1/search?query={query}")).await;
        let mut mails = Vec::new();
        // Newest first in the answer.
        for summary in found.messages.iter().rev() {
            let mut mail: Mail = self.get(&format!("/api/v1/message/{}", summary.id)).await;
            mail.headers = self
                .get(&format!("/api/v1/message/{}/headers", summary.id))
                .await;
            mails.push(mail);
        }
        mails
    }

    /// Waits up to `within` for `n` messages to `address`, and returns what arrived.
    pub async fn wait_for(&self, address: &str, n: usize, within: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mails = self.to(address).await;
            if mails.len() >= n || tokio::time::Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
