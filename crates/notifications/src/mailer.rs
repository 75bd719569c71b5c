//! The mailer port and its two adapters: SMTP, and `.eml` files in a directory.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use oxcart_events::store::BoxError;

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `message`, whose `Message-ID` is `id`. Sending the same id twice is allowed
    /// (after a crash); an adapter that can collapse the two should.
    async fn send(&self, id: &str, message: &Message) -> Result<(), BoxError>;

    /// Where mail goes, for the start-up banner and logs.
    fn describe(&self) -> String;
}

/// Writes each message as an RFC 5322 file, `<message-id>.eml`: the default, so that a
/// fresh install "sends" mail without a mail server and a developer can open it. The
/// file is written to a temporary name and renamed, so a reader never sees half a
/// message, and a resend replaces the file instead of adding one.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
}

impl FileMailer {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl Mailer for FileMailer {
    #[tracing::instrument(name = "send email", skip_all, fields(email.transport = "file"))]
    async fn send(&self, id: &str, message: &Message) -> Result<(), BoxError> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.dir.join(format!("{name}.eml"));
        let partial = self.dir.join(format!(".{name}.eml.partial"));
        tokio::fs::write(&partial, message.formatted()).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// Sends over SMTP. The URL follows lettre's scheme: `smtp://host:port` (plain, for a
/// local relay), `smtp://host:587?tls=required` (STARTTLS), `smtps://user:pass@host`
/// (implicit TLS).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    shown: String,
}

impl SmtpMailer {
    pub fn new(url: &str) -> Result<Self, lettre::transport::smtp::Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        // Never show credentials.
        let shown = match url.split_once('@') {
            Some((scheme_and_user, host)) => {
                let scheme = scheme_and_user.split("://").next().unwrap_or("smtp");
                format!("{scheme}://…@{host}")
            }
            None => url.to_owned(),
        };
        Ok(Self { transport, shown })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    #[tracing::instrument(
        name = "send email",
        skip_all,
        fields(otel.kind = "client", email.transport = "smtp", server.address = %self.shown)
    )]
    async fn send(&self, _id: &str, message: &Message) -> Result<(), BoxError> {
        self.transport.send(message.clone()).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("SMTP {}", self.shown)
    }
}
