//! Notifications: the e-mails a customer gets as their order moves on.
//!
//! # Layout
//! - [`templates`]: order confirmation, payment failed, shipped, cancelled (and refunded),
//!   each as text and HTML.
//! - [`mailer`]: the mailer port; SMTP (`SMTP_URL`) and `.eml` files (the default).
//! - [`build`]: the service from its ports and its `[mail]` section ([`MailConfig`]).
//! - [`EmailHandler`]: the consumer (`email-service`) that sends one e-mail per event and
//!   recipient, even under redelivery.
//!
//! Exactly-once e-mail does not exist: a message handed to a server cannot be recalled
//! if the record of sending it is then lost. So the handler records each e-mail (with the
//! event's claim) right after sending it, and derives the `Message-ID` from the event and
//! the recipient: the only duplicate possible is a crash between those two steps, and it
//! carries the same `Message-ID`, which the file mailer collapses into one file and mail
//! clients recognise.

pub mod mailer;
pub mod templates;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MessageBuilder, MultiPart};
use oxcart_db::{self as db, Db};
use oxcart_events::RecordedEvent;
use oxcart_events::backoff::Backoff;
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_orders::OrderSource;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::tls::TrustedCas;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use mailer::{CheckError, FileMailer, Mailer, SmtpMailer};
use templates::{Details, Template};
pub use templates::{Reset, TemplateError, Templates};

pub const GROUP: &str = "email-service";

pub const ABOUT: About = About {
    name: "notifications",
    description: "E-mails to customers; no HTTP operations of its own.",
    openapi: About::no_operations,
};

/// The `[mail]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host:port` (or `smtps://user:pass@host`): send e-mail over SMTP. When
    /// unset, e-mails are written as `.eml` files to `dir`. `SMTP_URL` sets it too.
    #[serde(skip_serializing)]
    pub smtp_url: Option<SecretString>,
    /// Where e-mails go without SMTP; defaults to `<data_dir>/mail`.
    pub dir: Option<PathBuf>,
    /// The sender of every e-mail.
    pub from: String,
    /// Where a customer's reply goes (`Reply-To`), when not to `from`: a support desk's
    /// address while `from` is a no-reply one.
    pub reply_to: Option<String>,
    /// A directory of e-mail templates that replace the built-in ones of the same name
    /// (`order-confirmation.subject.txt`, `….txt`, `….html`, `layout.html`, …; see
    /// `crates/notifications/templates/`). Checked at start-up.
    pub templates_dir: Option<PathBuf>,
    /// Attach the invoice PDF to the payment confirmation. The invoices service issues
    /// it from the same event, so the e-mail waits for it, up to `invoice_wait`; past
    /// that the e-mail fails and is retried like any event (and dead-lettered, to be
    /// replayed, should invoices stay away). Off for a deployment without invoices.
    pub attach_invoice: bool,
    #[serde(with = "humantime_serde")]
    pub invoice_wait: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            dir: None,
            from: "oxcart <orders@oxcart.localhost>".to_owned(),
            reply_to: None,
            templates_dir: None,
            attach_invoice: true,
            invoice_wait: Duration::from_secs(30),
        }
    }
}

impl MailConfig {
    /// The mailer these settings name: SMTP, reached once here so that a certificate or
    /// login the relay refuses stops the start with the cause; else `.eml` files in
    /// `dir`, or `default_dir`.
    pub async fn mailer(
        &self,
        default_dir: &Path,
        cas: &TrustedCas,
    ) -> Result<Arc<dyn Mailer>, BoxError> {
        match &self.smtp_url {
            Some(url) => {
                let smtp = SmtpMailer::new(url.expose_secret(), cas)?;
                smtp.check().await?;
                Ok(Arc::new(smtp))
            }
            None => Ok(Arc::new(FileMailer::new(
                self.dir.clone().unwrap_or_else(|| default_dir.to_owned()),
            ))),
        }
    }
}

/// What notifications stand on: where they keep their claims, read orders and
/// customers' addresses, and send mail, and the templates (loaded once per process,
/// [`Templates::load`], and shared with [`AccountMail`]).
pub struct Ports {
    pub db: Db,
    pub orders: Arc<dyn OrderSource>,
    pub recipients: Arc<dyn Recipients>,
    pub mailer: Arc<dyn Mailer>,
    pub templates: Templates,
    /// Where the confirmation's invoice comes from; `None` sends it without one.
    pub invoices: Option<Arc<dyn InvoiceSource>>,
}

/// An invoice to attach: its file name and PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceFile {
    pub file_name: String,
    pub pdf: Vec<u8>,
}

/// Where the payment confirmation gets the order's invoice: the invoices service's
/// documents.
#[async_trait]
pub trait InvoiceSource: Send + Sync + 'static {
    /// The invoice of `order_id`; `None` until it is issued.
    async fn invoice(&self, order_id: Uuid) -> Result<Option<InvoiceFile>, BoxError>;
}

/// The notifications service: its one consumer. A `from` or `reply_to` that is not an
/// address is an error here, at start, not in a customer's mail.
pub fn build(ports: Ports, config: &MailConfig) -> Result<Parts, lettre::address::AddressError> {
    tracing::info!(mail = %ports.mailer.describe(), "e-mail delivery");
    let handler = EmailHandler::new(ports, config)?;
    Ok(Parts::default().with_handler(Arc::new(handler)))
}

/// E-mails about an account rather than an order (a password reset), through the same
/// mailer and templates as the order e-mails; cheap to clone.
#[derive(Clone)]
pub struct AccountMail {
    mailer: Arc<dyn Mailer>,
    templates: Templates,
    sender: Sender,
}

/// Who every e-mail is from, and where replies go.
#[derive(Debug, Clone)]
struct Sender {
    from: Mailbox,
    reply_to: Option<Mailbox>,
}

impl Sender {
    fn new(config: &MailConfig) -> Result<Self, lettre::address::AddressError> {
        Ok(Self {
            from: config.from.parse()?,
            reply_to: config.reply_to.as_deref().map(str::parse).transpose()?,
        })
    }

    /// A message `id` to `to`, made from `template`, with its headers in place.
    fn message(&self, id: &str, to: Mailbox, subject: &str, template: &str) -> MessageBuilder {
        let mut message = Message::builder()
            .message_id(Some(format!("<{id}>")))
            .from(self.from.clone());
        if let Some(reply_to) = &self.reply_to {
            message = message.reply_to(reply_to.clone());
        }
        message
            .to(to)
            .subject(subject)
            .raw_header(header("X-Oxcart-Template", template.to_owned()))
    }
}

impl AccountMail {
    pub fn new(
        mailer: Arc<dyn Mailer>,
        templates: Templates,
        config: &MailConfig,
    ) -> Result<Self, lettre::address::AddressError> {
        Ok(Self {
            mailer,
            templates,
            sender: Sender::new(config)?,
        })
    }

    /// Sends the password-reset e-mail to `email`.
    pub async fn send_reset(
        &self,
        email: &str,
        reset: &templates::Reset<'_>,
    ) -> Result<(), BoxError> {
        let mail = self.templates.render_reset(reset)?;
        let id = format!("{}@oxcart", Uuid::now_v7().simple());
        let to = Mailbox::new(reset.name.map(str::to_owned), email.parse()?);
        let message = self
            .sender
            .message(&id, to, &mail.subject, "password-reset")
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))?;
        self.mailer.send(&id, &message).await?;
        Ok(())
    }
}

/// Who an e-mail goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: String,
    pub name: Option<String>,
}

/// Where notifications learn a customer's address. In one process it is the users
/// service itself; split apart, a client of it.
#[async_trait]
pub trait Recipients: Send + Sync + 'static {
    async fn recipient(&self, user_id: Uuid) -> Result<Option<Recipient>, BoxError>;
}

pub struct EmailHandler {
    db: Db,
    orders: Arc<dyn OrderSource>,
    recipients: Arc<dyn Recipients>,
    mailer: Arc<dyn Mailer>,
    sender: Sender,
    templates: Templates,
    invoices: Option<Arc<dyn InvoiceSource>>,
    invoice_wait: Duration,
}

impl EmailHandler {
    pub fn new(ports: Ports, config: &MailConfig) -> Result<Self, lettre::address::AddressError> {
        Ok(Self {
            db: ports.db,
            orders: ports.orders,
            recipients: ports.recipients,
            mailer: ports.mailer,
            sender: Sender::new(config)?,
            templates: ports.templates,
            invoices: ports.invoices.filter(|_| config.attach_invoice),
            invoice_wait: config.invoice_wait,
        })
    }

    /// The invoice of `order_id`, waited for up to `invoice_wait`: it is issued from the
    /// same event as the confirmation, by another consumer group, usually within
    /// milliseconds.
    async fn invoice(&self, order_id: Uuid) -> Result<Option<InvoiceFile>, BoxError> {
        let Some(invoices) = &self.invoices else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + self.invoice_wait;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            if let Some(file) = invoices.invoice(order_id).await? {
                return Ok(Some(file));
            }
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause > deadline {
                return Err(format!(
                    "the invoice of order {order_id} was not issued within {}; the confirmation waits for it",
                    humantime::format_duration(self.invoice_wait)
                )
                .into());
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// One `Message-ID` per event and recipient.
fn message_id(event_id: Uuid, recipient: &str) -> String {
    let digest = Sha256::digest(recipient.to_lowercase().as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.{tag}@oxcart", event_id.simple())
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

#[async_trait]
impl Handler for EmailHandler {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS, topics::PAYMENTS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        let Some(template) = Template::for_event(&event.event.event_type) else {
            return Ok(());
        };
        let data = &event.event.data;
        // A cancelled order's refund is in the cancellation's e-mail already.
        if template == Template::Refunded && data["source"] != "request" {
            return Ok(());
        }
        let event_id = event.event.event_id;
        if db::claimed(&self.db, GROUP, event_id).await? {
            return Ok(());
        }
        // An order's own events are its stream's; a payment's name their order.
        let order_id = match data["orderId"].as_str() {
            Some(id) if template == Template::Refunded => id.parse()?,
            _ => event.event.aggregate_id,
        };
        let order = self
            .orders
            .order(order_id)
            .await?
            .ok_or_else(|| format!("order {order_id} not found"))?;
        let Some(recipient) = self.recipients.recipient(order.customer_id).await? else {
            tracing::warn!(order_id = %order_id, customer = %order.customer_id, "customer has no e-mail address; nothing sent");
            if let Some(tx) = db::begin_claimed(&self.db, GROUP, event_id).await? {
                tx.commit().await?;
            }
            return Ok(());
        };
        let details = Details {
            reason: data["reason"].as_str().map(str::to_owned),
            refund_due: data["refundDue"].as_bool().unwrap_or(false),
            refunded: data["amount"]
                .as_i64()
                .filter(|_| template == Template::Refunded),
            refunded_before: data["refundedBefore"].as_i64().unwrap_or(0),
        };
        let mail = self
            .templates
            .render(template, &order, recipient.name.as_deref(), &details)?;
        let invoice = match template {
            Template::Confirmation => self.invoice(order_id).await?,
            _ => None,
        };
        let id = message_id(event_id, &recipient.email);
        let to = Mailbox::new(recipient.name.clone(), recipient.email.parse()?);
        // The event's time, so a resend is the same message.
        let at = UNIX_EPOCH
            + Duration::from_micros(
                u64::try_from(event.event.timestamp.timestamp_micros()).unwrap_or(0),
            );
        let message = self
            .sender
            .message(&id, to, &mail.subject, template.name())
            .date(at)
            .raw_header(header("X-Oxcart-Order-Id", order_id.to_string()))
            .raw_header(header("X-Oxcart-Event-Id", event_id.to_string()));
        let body = MultiPart::alternative_plain_html(mail.text, mail.html);
        let message = match invoice {
            None => message.multipart(body)?,
            Some(file) => message.multipart(
                MultiPart::mixed().multipart(body).singlepart(
                    Attachment::new(file.file_name)
                        .body(file.pdf, ContentType::parse("application/pdf")?),
                ),
            )?,
        };
        self.mailer.send(&id, &message).await?;

        let Some(mut tx) = db::begin_claimed(&self.db, GROUP, event_id).await? else {
            return Ok(());
        };
        db::query(
            "INSERT INTO notifications (message_id, event_id, order_id, recipient, template, subject, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(&id)
        .bind(event_id.to_string())
        .bind(order_id.to_string())
        .bind(&recipient.email)
        .bind(template.name())
        .bind(&mail.subject)
        .bind(db::timestamp(db::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(order_id = %order_id, template = template.name(), message_id = %id, "e-mail sent");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_per_event_and_recipient() {
        let event = Uuid::now_v7();
        assert_eq!(message_id(event, "a@x.test"), message_id(event, "A@X.test"));
        assert_ne!(message_id(event, "a@x.test"), message_id(event, "b@x.test"));
        assert_ne!(
            message_id(event, "a@x.test"),
            message_id(Uuid::now_v7(), "a@x.test")
        );
    }
}
