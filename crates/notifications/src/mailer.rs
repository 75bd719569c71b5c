//! The mailer port and its two adapters: SMTP, and `.eml` files in a directory.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use oxcart_events::store::BoxError;
use oxcart_platform::tls::{self, TrustedCas};

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
        let dir = self.dir.clone();
        let formatted = message.formatted();
        // One trip to the blocking pool, not one per file operation.
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{name}.eml"));
            let partial = dir.join(format!(".{name}.eml.partial"));
            std::fs::write(&partial, formatted)?;
            std::fs::rename(&partial, &path)
        })
        .await??;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// Sends over SMTP. The URL follows lettre's scheme: `smtp://host:port` (plain, for a
/// local relay), `smtp://host:587?tls=required` (STARTTLS; `tls=opportunistic` when the
/// server may not offer it), `smtps://user:pass@host` (implicit TLS). The server's
/// certificate is verified against the public roots and `cas`.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    shown: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{relay}: TLS refused: {reason}")]
    Tls { relay: String, reason: String },
    #[error("{relay}: {error}")]
    Refused {
        relay: String,
        error: lettre::transport::smtp::Error,
    },
}

/// How a URL asks for TLS, in lettre's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls { required: bool },
    Implicit,
}

fn security(url: &str) -> Security {
    let tls = url
        .split_once('?')
        .map(|(_, query)| query)
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("tls="));
    match (url.split("://").next(), tls) {
        (Some("smtps"), _) => Security::Implicit,
        (_, Some("required")) => Security::StartTls { required: true },
        (_, Some("opportunistic")) => Security::StartTls { required: false },
        _ => Security::Plain,
    }
}

impl SmtpMailer {
    pub fn new(url: &str, cas: &TrustedCas) -> Result<Self, lettre::transport::smtp::Error> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
            .timeout(Some(Duration::from_secs(10)));
        // lettre made the TLS parameters from the URL with the public roots; with more
        // CAs to trust, they are made again the same way, with those CAs.
        if let Some(pem) = cas.pem() {
            let host = url
                .split_once("://")
                .map(|(_, rest)| rest.rsplit_once('@').map_or(rest, |(_, host)| host))
                .and_then(|rest| rest.split([':', '/', '?']).next())
                .unwrap_or_default();
            let parameters = || {
                TlsParameters::builder(host.to_owned())
                    .add_root_certificate(Certificate::from_pem(pem)?)
                    .build()
            };
            builder = match security(url) {
                Security::Plain => builder,
                Security::StartTls { required: true } => builder.tls(Tls::Required(parameters()?)),
                Security::StartTls { required: false } => {
                    builder.tls(Tls::Opportunistic(parameters()?))
                }
                Security::Implicit => builder.tls(Tls::Wrapper(parameters()?)),
            };
        }
        let transport = builder.build();
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

    /// Connects once (TLS and login included) and says goodbye, at start-up. A
    /// certificate refused, or a login the relay refuses (a 5xx), is an error, since no
    /// retry mends it; a relay that does not answer yet is only logged, and the e-mails
    /// wait for it.
    pub async fn check(&self) -> Result<(), CheckError> {
        let Err(error) = self.transport.test_connection().await else {
            return Ok(());
        };
        let relay = self.shown.clone();
        if let Some(reason) = tls::failure(&error) {
            return Err(CheckError::Tls { relay, reason });
        }
        if error.is_permanent() {
            return Err(CheckError::Refused { relay, error });
        }
        tracing::warn!(%error, relay = %self.shown, "the SMTP relay cannot be reached yet; e-mails wait and retry");
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_says_how_to_secure_the_connection() {
        assert_eq!(security("smtp://relay:25"), Security::Plain);
        assert_eq!(
            security("smtp://u:p@relay:587?tls=required"),
            Security::StartTls { required: true }
        );
        assert_eq!(
            security("smtp://relay?tls=opportunistic"),
            Security::StartTls { required: false }
        );
        assert_eq!(security("smtps://u:p@relay"), Security::Implicit);
    }
}
