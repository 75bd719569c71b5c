//! The outside services a process calls itself, besides its database and broker: the
//! SMTP relay (notifications), the catalog service (orders, with `catalog_url`) and Redis
//! (shared limits and caches, with `redis.url`).
//!
//! Each is reached once at start-up. A certificate it refuses, or credentials the relay
//! refuses, stop the process with one line that names the setting and the cause; a peer
//! that does not answer yet is only logged, since services start in any order and the
//! consumers retry.

use std::sync::Arc;

use anyhow::Context as _;
use oxcart_notifications::Mailer;
use oxcart_payments::ProviderKind;
use oxcart_payments::stripe::Stripe;
use oxcart_platform::auth::{MemoryRevocations, Revocations};
use oxcart_platform::cache::{CacheStore, MemoryCache};
use oxcart_platform::http::client::ServiceClient;
use oxcart_platform::limit::{LimitStore, MemoryStore};
use oxcart_platform::tls::TrustedCas;
use oxcart_redis::Redis;

use crate::config::{Config, Service};

pub struct Peers {
    /// Where e-mail goes, when this process sends it.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// The catalog service, when orders price through it.
    pub catalog: Option<ServiceClient>,
    /// Rate-limit state: Redis's with `redis.url`, else this process's memory.
    pub limits: Arc<dyn LimitStore>,
    /// Ended sessions: the users service writes them, every token check reads them.
    /// Redis's with `redis.url`, else this process's memory.
    pub revocations: Arc<dyn Revocations>,
    /// Where caches live: Redis's with `redis.url`, else this process's memory.
    pub cache: Arc<dyn CacheStore>,
    /// Whether `cache` is shared with other processes (Redis).
    pub shared_cache: bool,
    /// Stripe, when this process runs payments with `payments.provider = "stripe"`.
    pub stripe: Option<Stripe>,
}

impl Peers {
    /// The clients `config` asks for, each reached once.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let cas =
            TrustedCas::from_optional(config.tls.ca_file.as_deref()).context("tls.ca_file")?;
        // Notifications send order e-mails; users send password-reset codes.
        let mailer = if config.services.contains(Service::Notifications)
            || config.services.contains(Service::Users)
        {
            let mailer = config.mail.mailer(&config.default_mail_dir(), &cas).await;
            Some(
                mailer
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("mail.smtp_url (SMTP_URL)")?,
            )
        } else {
            None
        };
        let orders = &config.orders;
        let catalog = match &orders.catalog_url {
            Some(url) => {
                let client = ServiceClient::new(url, orders.catalog_timeout, &cas)
                    .context("orders.catalog_url")?;
                client.check().await.context("orders.catalog_url")?;
                Some(client)
            }
            None => None,
        };
        let redis = match &config.redis.url {
            Some(_) => Some(
                Redis::connect(&config.redis, &cas)
                    .await
                    .context("redis.url (REDIS_URL)")?,
            ),
            None => None,
        };
        let stripe = match (
            config.services.contains(Service::Payments),
            config.payments.provider,
        ) {
            (true, ProviderKind::Stripe) => Some(
                Stripe::new(&config.payments.stripe, &cas)
                    .context("payments.stripe (STRIPE_API_KEY)")?,
            ),
            _ => None,
        };
        let shared_cache = redis.is_some();
        let (limits, revocations, cache): (
            Arc<dyn LimitStore>,
            Arc<dyn Revocations>,
            Arc<dyn CacheStore>,
        ) = match redis {
            Some(redis) => (
                Arc::new(redis.clone()),
                Arc::new(redis.clone()),
                Arc::new(redis),
            ),
            None => (
                Arc::new(MemoryStore::default()),
                Arc::new(MemoryRevocations::default()),
                Arc::new(MemoryCache::new(
                    config.caching.capacity,
                    config.caching.ttl,
                )),
            ),
        };
        Ok(Self {
            mailer,
            catalog,
            limits,
            revocations,
            cache,
            shared_cache,
            stripe,
        })
    }
}
