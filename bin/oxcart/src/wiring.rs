//! Which services a process runs, and how their ports are connected: each service builds
//! itself from its ports and its config section (`oxcart_orders::build`, …); this only
//! chooses and connects. In one process, orders price through the catalog's own tables
//! ([`LocalCatalog`]) and notifications read addresses from the users service
//! (`LocalUsers`); split apart, through the clients [`Peers`] made.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use oxcart_catalog::Catalog;
use oxcart_db::Db;
use oxcart_events::store::BoxError;
use oxcart_invoices::{Invoices, Which};
use oxcart_notifications::{
    AccountMail, InvoiceFile, InvoiceSource, Recipient, Recipients, Reset, Templates,
};
use oxcart_orders::cached_catalog::CachedCatalog;
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::remote::{PRODUCT_ROUTE, RemoteCatalog};
use oxcart_orders::{OrderSource, OrdersService, ProductCatalog, ReadSide};
use oxcart_platform::auth::SigningKey;
use oxcart_platform::cache::{CacheMetrics, Cached, PAYMENTS, PRODUCT_SNAPSHOTS};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::Parts;
use oxcart_sql::SqlEventStore;
use oxcart_users::{ResetMail, ResetMailer, Users};

use crate::Peers;
use crate::config::{Config, Service};

/// Orders read prices through this port; in one process it is the catalog itself. (Over
/// HTTP it is `oxcart_orders::remote::RemoteCatalog`; both pass one contract,
/// `oxcart_test_util::catalog`.)
pub struct LocalCatalog(pub Catalog);

#[async_trait]
impl ProductCatalog for LocalCatalog {
    async fn snapshots(&self, ids: &[uuid::Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        let products = self.0.get_many(ids).await?;
        Ok(products
            .into_iter()
            .map(|p| ProductSnapshot {
                id: p.id,
                sku: p.sku,
                name: p.name,
                price: p.price,
                currency: p.currency.code().to_owned(),
                tax_class: p.tax_class,
            })
            .collect())
    }
}

/// A call one service makes to another over HTTP. The list is what the deployment's
/// authorization policies must allow between services, and a test holds them to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub from: Service,
    pub to: Service,
    pub method: &'static str,
    /// The route template, as the callee's OpenAPI document names it.
    pub route: &'static str,
}

/// Orders price an order through the catalog (with `catalog_url` set).
pub const PRODUCT_LOOKUP: Call = Call {
    from: Service::Orders,
    to: Service::Catalog,
    method: "GET",
    route: PRODUCT_ROUTE,
};

/// Every call between services.
pub const CALLS: &[Call] = &[PRODUCT_LOOKUP];

/// Notifications read customers' addresses through this port; in one process it is the
/// users service itself.
struct LocalUsers(Users);

#[async_trait]
impl Recipients for LocalUsers {
    async fn recipient(&self, user_id: uuid::Uuid) -> Result<Option<Recipient>, BoxError> {
        match self.0.get(user_id).await {
            Ok(user) => Ok(Some(Recipient {
                email: user.email,
                name: user.name,
            })),
            Err(oxcart_users::Error::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// The payment confirmation attaches the order's invoice, read from the invoices
/// service's documents (every process shares the database; its schemas are each
/// service's own, and this read is the one the invoices service allows).
struct LocalInvoices(Invoices);

#[async_trait]
impl InvoiceSource for LocalInvoices {
    async fn invoice(&self, order_id: uuid::Uuid) -> Result<Option<InvoiceFile>, BoxError> {
        Ok(self
            .0
            .document(order_id, Which::Invoice)
            .await?
            .map(|(_, pdf)| InvoiceFile {
                file_name: format!("{}.pdf", pdf.number),
                pdf: pdf.bytes,
            }))
    }
}

/// Users send password-reset codes through the process's mailer and the e-mail
/// templates.
struct ResetByMail(AccountMail);

#[async_trait]
impl ResetMailer for ResetByMail {
    async fn send(&self, mail: ResetMail) -> Result<(), BoxError> {
        let reset = Reset {
            name: mail.name.as_deref(),
            token: &mail.token,
            link: mail.link.as_deref(),
            expires_in: mail.expires_in,
        };
        self.0.send_reset(&mail.email, &reset).await
    }
}

/// The cache of product snapshots, where it can be kept right: the catalog invalidates
/// it on every change, so it must see the same cache as the orders that read it. That is
/// so in Redis, which every process shares, or in memory when this process runs the
/// catalog itself and no other process can. (Otherwise orders read through.)
fn snapshot_cache(config: &Config, peers: &Peers, metrics: &CacheMetrics) -> Option<Cached> {
    let in_process = config.services.contains(Service::Catalog) && peers.catalog.is_none();
    cache_where(
        config,
        peers,
        in_process && one_process(config),
        PRODUCT_SNAPSHOTS,
        metrics,
    )
}

/// Whether no other process can be running these services beside this one: SQLite is
/// one process's file. (On PostgreSQL, replicas may run the same services, each with
/// memory of its own.)
fn one_process(config: &Config) -> bool {
    config.database_url().starts_with("sqlite:")
}

/// A cache whose writer and readers are one service (payments: its saga writes, its route
/// reads): in memory only in [`one_process`], else in Redis.
fn shared_cache(
    config: &Config,
    peers: &Peers,
    namespace: &'static str,
    metrics: &CacheMetrics,
) -> Option<Cached> {
    cache_where(config, peers, one_process(config), namespace, metrics)
}

fn cache_where(
    config: &Config,
    peers: &Peers,
    in_memory_is_right: bool,
    namespace: &'static str,
    metrics: &CacheMetrics,
) -> Option<Cached> {
    (config.caching.enabled && (peers.shared_cache || in_memory_is_right)).then(|| {
        Cached::new(
            Arc::clone(&peers.cache),
            namespace,
            config.caching.ttl,
            metrics,
        )
    })
}

/// Builds what `config.services` needs on `db`, appending to `store` (one per process,
/// so that its doorbell wakes every consumer), calling out through `peers`. Each service
/// builds itself from its ports and its config section; this only chooses which run and
/// connects their ports. `metrics` receives the services' own collectors.
pub fn assemble(
    config: &Config,
    db: &Db,
    store: &Arc<SqlEventStore>,
    key: &Arc<SigningKey>,
    metrics: &Metrics,
    peers: &Peers,
) -> anyhow::Result<Parts> {
    // Settings a product or an invoice would show wrong stop the start instead.
    config.tax.validate().map_err(anyhow::Error::msg)?;
    config.invoices.validate().map_err(anyhow::Error::msg)?;
    let cache_metrics = CacheMetrics::new(metrics);
    let snapshots = snapshot_cache(config, peers, &cache_metrics);
    let catalog: Arc<dyn ProductCatalog> = match &peers.catalog {
        Some(client) => Arc::new(RemoteCatalog::new(client.clone())),
        None => Arc::new(LocalCatalog(Catalog::new(db.clone()))),
    };
    let catalog: Arc<dyn ProductCatalog> = match &snapshots {
        Some(cache) => Arc::new(CachedCatalog {
            inner: catalog,
            cache: cache.clone(),
        }),
        None => catalog,
    };
    // Built whether or not this process runs orders: notifications and invoices read
    // orders through it.
    let orders = oxcart_orders::build(
        oxcart_orders::Ports {
            store: store.clone(),
            catalog,
            read_side: ReadSide::Sql(db.clone()),
        },
        &config.orders,
        metrics,
    );
    let order_source: Arc<dyn OrderSource> = Arc::new(orders.orders().clone());
    let mut orders = Some(orders);
    // The e-mail templates, loaded (and checked) once for the services that send mail.
    let mail = match &peers.mailer {
        Some(mailer) => Some((
            Arc::clone(mailer),
            Templates::load(config.mail.templates_dir.as_deref()).context("mail.templates_dir")?,
        )),
        None => None,
    };
    let mut parts = Parts::default();
    for service in config.services.iter() {
        parts = parts.merge(match service {
            Service::Users => oxcart_users::build(
                db.clone(),
                Arc::clone(key),
                Arc::clone(&peers.revocations),
                match &mail {
                    Some((mailer, templates)) => Some(Arc::new(ResetByMail(
                        AccountMail::new(Arc::clone(mailer), templates.clone(), &config.mail)
                            .context("mail.from or mail.reply_to")?,
                    ))
                        as Arc<dyn ResetMailer>),
                    None => None,
                },
                &config.users,
                metrics,
            ),
            Service::Catalog => {
                oxcart_catalog::build(db.clone(), store.clone(), snapshots.clone(), &config.tax)
            }
            Service::Orders => orders.take().map(OrdersService::parts).unwrap_or_default(),
            Service::Payments => oxcart_payments::build(
                db.clone(),
                store.clone(),
                &config.payments,
                shared_cache(config, peers, PAYMENTS, &cache_metrics),
                peers.stripe.clone(),
            ),
            Service::Notifications => {
                let (mailer, templates) =
                    mail.clone().context("notifications run without a mailer")?;
                oxcart_notifications::build(
                    oxcart_notifications::Ports {
                        db: db.clone(),
                        orders: Arc::clone(&order_source),
                        recipients: Arc::new(LocalUsers(Users::new(
                            db.clone(),
                            Arc::clone(key),
                            &config.users,
                        ))),
                        mailer,
                        templates,
                        invoices: Some(Arc::new(LocalInvoices(Invoices::new(db.clone())))),
                    },
                    &config.mail,
                )
                .context("mail.from or mail.reply_to")?
            }
            Service::Invoices => oxcart_invoices::build(
                db.clone(),
                Arc::clone(&order_source),
                &config.invoices,
                &config.tax,
            ),
            Service::Analytics => oxcart_analytics::build(db.clone()),
            Service::Webhooks => oxcart_webhooks::build(db.clone(), &config.webhooks)
                .context("webhooks: the HTTP client")?,
        });
    }
    Ok(parts)
}
