//! The outside services a process calls itself, besides its database and broker: the
//! SMTP relay (notifications) and the catalog service (orders, with `catalog_url`).
//!
//! Each is reached once at start-up. A certificate it refuses, or credentials the relay
//! refuses, stop the process with one line that names the setting and the cause; a peer
//! that does not answer yet is only logged, since services start in any order and the
//! consumers retry.

use std::sync::Arc;

use anyhow::Context as _;
use oxcart_notifications::{FileMailer, Mailer, SmtpMailer};
use oxcart_platform::http::client::ServiceClient;
use oxcart_platform::tls::TrustedCas;
use secrecy::ExposeSecret;

use crate::config::{Config, Service};

pub struct Peers {
    /// Where e-mail goes, when this process sends it.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// The catalog service, when orders price through it.
    pub catalog: Option<ServiceClient>,
}

impl Peers {
    /// The clients `config` asks for, each reached once.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let cas =
            TrustedCas::from_optional(config.tls_ca_file.as_deref()).context("tls_ca_file")?;
        let mailer: Option<Arc<dyn Mailer>> = match &config.smtp_url {
            _ if !config.services.contains(Service::Notifications) => None,
            Some(url) => {
                let smtp = SmtpMailer::new(url.expose_secret(), &cas).context("SMTP_URL")?;
                smtp.check().await.context("SMTP_URL")?;
                Some(Arc::new(smtp))
            }
            None => Some(Arc::new(FileMailer::new(config.mail_dir()))),
        };
        let catalog = match &config.catalog_url {
            Some(url) => {
                let client = ServiceClient::new(url, config.orders().catalog_timeout, &cas)
                    .context("catalog_url")?;
                client.check().await.context("catalog_url")?;
                Some(client)
            }
            None => None,
        };
        Ok(Self { mailer, catalog })
    }
}
