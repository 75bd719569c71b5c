//! The oxcart composition root: which services run in this process, and how they are
//! wired to storage and to each other. `main.rs` only parses the command line.
//!
//! # Layout
//! - [`config`]: layered configuration.
//! - [`App`]: builds the services a process runs, serves them, drains on shutdown.
//! - [`openapi`]: the OpenAPI document of a set of services.
//! - [`Peers`]: the SMTP relay and the catalog service, reached once at start-up.

pub mod config;
mod peers;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::{Extension, Router};
use oxcart_catalog::Catalog;
use oxcart_db::{self as db, Backend, Db};
use oxcart_events::consumer::{ConsumerMetrics, ConsumerRunner, DeadLetters};
use oxcart_events::projection::ProjectionRunner;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, Position};
use oxcart_notifications::{Recipient, Recipients};
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::remote::{PRODUCT_ROUTE, RemoteCatalog};
use oxcart_orders::{OrderSource, OrdersService, ProductCatalog, ReadSide};
use oxcart_platform::auth::SigningKey;
use oxcart_platform::health::{self, Health};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::Parts;
use oxcart_platform::shutdown::Tasks;
use oxcart_platform::{docs, http};
use oxcart_sql::SqlEventStore;
use oxcart_users::Users;
use prometheus::IntCounter;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, Service, Services};
pub use crate::peers::Peers;
use crate::transport::{Background, Transport};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Samples what no event updates: how far the projections lag, how many dead letters
/// wait per group, and how far the log has grown.
struct Sampler {
    store: Arc<dyn EventStore>,
    dead_letters: Arc<dyn DeadLetters>,
    metrics: ConsumerMetrics,
    /// Each projection's name and progress, as its runner publishes it.
    projections: Vec<(&'static str, watch::Receiver<Position>)>,
    /// `events_appended_total`: the log's head, as a counter.
    appended: IntCounter,
}

impl Sampler {
    fn appended_counter() -> IntCounter {
        IntCounter::new(
            "events_appended_total",
            "Events appended to the log, by any process: every process reports the whole \
             log's count, so aggregate with max, not sum",
        )
        .expect("valid metric definition")
    }

    async fn sample(&self) -> Result<(), BoxError> {
        let head = self.store.head().await?;
        // The head only grows (positions are never reused), so it counts appends.
        let head_count = u64::try_from(head).unwrap_or(0);
        self.appended
            .inc_by(head_count.saturating_sub(self.appended.get()));
        for (name, progress) in &self.projections {
            let at = *progress.borrow();
            self.metrics
                .set_lag(name, u64::try_from(head - at).unwrap_or(0));
        }
        self.metrics
            .set_dead_letters(&self.dead_letters.depth().await?);
        Ok(())
    }

    async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.sample().await {
                tracing::debug!(error = %error, "cannot sample consumer metrics");
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

/// Opens the configured database: a SQLite file, or PostgreSQL and its replicas.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let url = config.database_url();
    if oxcart_postgres::is_postgres_url(&url) {
        return Ok(oxcart_postgres::connect(
            &url,
            &config.database_read_urls(),
            &config.database.postgres,
        )
        .await?);
    }
    let path = oxcart_sqlite::path_from_url(&url).with_context(|| {
        format!(
            "unsupported DATABASE_URL `{}`: expected sqlite:<path> or postgres://…",
            oxcart_postgres::redact(&url)
        )
    })?;
    Ok(oxcart_sqlite::connect(&path, &config.database.sqlite).await?)
}

/// The schema this build keeps on `db`'s engine.
pub fn migrator(db: &Db) -> &'static Migrator {
    match db.backend() {
        Backend::Sqlite => &oxcart_sqlite::MIGRATOR,
        Backend::Postgres => &oxcart_postgres::MIGRATOR,
    }
}

/// Applies the pending migrations: on SQLite through `db`, on PostgreSQL over a direct
/// connection to `database_migration_url`.
pub async fn migrate(config: &Config, db: &Db) -> anyhow::Result<()> {
    match db.backend() {
        Backend::Sqlite => oxcart_sqlite::migrate(db).await?,
        // Only when something is pending: the migrator's session-level lock and named
        // statements must not go through a transaction-pooling PgBouncer, and a process
        // pointed at one with nothing to apply then never touches them.
        Backend::Postgres
            if db
                .unapplied_migrations(&oxcart_postgres::MIGRATOR)
                .await
                .is_ok_and(|pending| pending.is_empty()) => {}
        Backend::Postgres => oxcart_postgres::migrate(&config.database_migration_url()).await?,
    }
    Ok(())
}

/// The token signing key: from configuration, or kept in the data directory.
pub fn signing_key(config: &Config) -> anyhow::Result<Arc<SigningKey>> {
    let key = match &config.auth.jwt_private_key {
        Some(pem) => SigningKey::from_pem(pem.expose_secret()).context("auth.jwt_private_key")?,
        None => SigningKey::load_or_generate(&config.signing_key_path())?,
    };
    Ok(Arc::new(key))
}

/// The OpenAPI document of `services`, complete with what the shared layers add.
pub fn openapi(services: &Services) -> OpenApi {
    let mut api = OpenApiRouter::<()>::new().into_openapi();
    let mut tags = Vec::new();
    for about in services.iter().map(Service::about) {
        api.merge((about.openapi)());
        tags.push(
            TagBuilder::new()
                .name(about.name)
                .description(Some(about.description))
                .build(),
        );
    }
    // Built whole: the router's default `info` carries utoipa-axum's own package metadata.
    api.info = InfoBuilder::new()
        .title("oxcart")
        .version(VERSION)
        .description(Some(
            "An event-driven commerce backend. Errors are RFC 9457 `application/problem+json` \
             documents; amounts are integers in the currency's minor unit. Protected operations \
             take `Authorization: Bearer <token>` from `POST /api/auth/token`.",
        ))
        .license(Some(utoipa::openapi::License::new("Apache-2.0")))
        .build();
    api.tags = Some(tags);
    docs::complete(&mut api);
    api
}

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
    let catalog: Arc<dyn ProductCatalog> = match &peers.catalog {
        Some(client) => Arc::new(RemoteCatalog::new(client.clone())),
        None => Arc::new(LocalCatalog(Catalog::new(db.clone()))),
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
    let mut parts = Parts::default();
    for service in config.services.iter() {
        parts = parts.merge(match service {
            Service::Users => oxcart_users::build(db.clone(), Arc::clone(key), &config.users),
            Service::Catalog => oxcart_catalog::build(db.clone(), store.clone()),
            Service::Orders => orders.take().map(OrdersService::parts).unwrap_or_default(),
            Service::Payments => {
                oxcart_payments::build(db.clone(), store.clone(), &config.payments)
            }
            Service::Notifications => oxcart_notifications::build(
                oxcart_notifications::Ports {
                    db: db.clone(),
                    orders: Arc::clone(&order_source),
                    recipients: Arc::new(LocalUsers(Users::new(
                        db.clone(),
                        Arc::clone(key),
                        &config.users,
                    ))),
                    mailer: peers
                        .mailer
                        .clone()
                        .context("notifications run without a mailer")?,
                },
                &config.mail,
            )
            .context("mail.from")?,
            Service::Invoices => oxcart_invoices::build(db.clone(), Arc::clone(&order_source)),
            Service::Analytics => oxcart_analytics::build(db.clone()),
        });
    }
    Ok(parts)
}

/// A built process: bound to its port, ready to run.
pub struct App {
    config: Config,
    db: Db,
    router: Router,
    listener: TcpListener,
    projections: Vec<ProjectionRunner>,
    consumers: Vec<ConsumerRunner>,
    relay: Option<Background>,
    sampler: Sampler,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        if config.migrate {
            migrate(&config, &db).await.context("applying migrations")?;
        }
        let key = signing_key(&config)?;
        let metrics = Metrics::new();
        metrics.register(Box::new(db::PoolMetrics::new(db.clone())));
        let consumer_metrics = ConsumerMetrics::new();
        for collector in consumer_metrics.collectors() {
            metrics.register(collector);
        }
        let health = Health::default()
            .with(health::DatabaseReachable(db.clone()))
            .with(health::DatabaseMigrated(db.clone(), migrator(&db)));
        let sql_store = Arc::new(SqlEventStore::new(db.clone()));
        let peers = Peers::connect(&config).await?;
        let parts = assemble(&config, &db, &sql_store, &key, &metrics, &peers)?;
        let store: Arc<dyn EventStore> = sql_store;
        let (transport, health) = Transport::open(&config, &db, &store, &metrics, health).await?;
        let (bus, dead_letters) = (transport.bus, transport.dead_letters);
        let consumers = parts
            .handlers
            .into_iter()
            .map(|handler| {
                ConsumerRunner::new(
                    Arc::clone(&bus),
                    handler,
                    Arc::clone(&dead_letters),
                    config.retry(),
                    consumer_metrics.clone(),
                )
                .with_outages(db::is_outage)
            })
            .collect();
        let appended = Sampler::appended_counter();
        metrics.register(Box::new(appended.clone()));
        let sampler = Sampler {
            store,
            dead_letters,
            metrics: consumer_metrics,
            appended,
            projections: parts
                .projections
                .iter()
                .map(|p| (p.name(), p.progress()))
                .collect(),
        };
        // The served document comes from `openapi()`, not from this router, so that it is
        // exactly the one `oxcart openapi` prints and the contract snapshot checks.
        let (routes, _) = parts.routes.split_for_parts();
        let router = routes
            .merge(health.router())
            .merge(metrics.router())
            .merge(docs::router(&openapi(&config.services)))
            .layer(Extension(key.verifier()));
        let router = http::finish(router, &config.http, &metrics);
        let listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.listen))?;
        Ok(Self {
            config,
            db,
            router,
            listener,
            projections: parts.projections,
            consumers,
            relay: transport.relay,
            sampler,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.http.listen)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until `shutdown` fires; then drains in-flight requests, stops background
    /// work and closes the database.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        // Background work outlives the HTTP drain, so in-flight reads waiting on the
        // projection can still be answered.
        self.announce(addr);
        let tasks = Tasks::new(CancellationToken::new());
        for runner in self.projections {
            let token = tasks.token().clone();
            tasks.spawn(runner.name(), runner.run(token));
        }
        for runner in self.consumers {
            let token = tasks.token().clone();
            tasks.spawn(runner.group(), runner.run(token));
        }
        if let Some((name, relay)) = self.relay {
            tasks.spawn(name, relay(tasks.token().clone()));
        }
        let token = tasks.token().clone();
        tasks.spawn("metrics-sampler", self.sampler.run(token));
        http::serve(
            self.listener,
            self.router,
            shutdown,
            self.config.http.shutdown_grace,
        )
        .await?;
        tasks.shutdown(Duration::from_secs(10)).await;
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    fn announce(&self, addr: SocketAddr) {
        let groups: Vec<&str> = self
            .consumers
            .iter()
            .map(ConsumerRunner::group)
            .chain(self.projections.iter().map(ProjectionRunner::name))
            .collect();
        let base = format!("http://{addr}");
        let database = oxcart_postgres::redact(&self.config.database_url());
        let services = self.config.services.to_string();
        tracing::info!(
            address = %addr,
            services = %services,
            docs = %format!("{base}/docs"),
            metrics = %format!("{base}/metrics"),
            database = %database,
            consumers = %groups.join(","),
            version = VERSION,
            "listening"
        );
        if !self.config.telemetry.log_format.is_json() {
            let data = std::path::absolute(&self.config.data_dir)
                .unwrap_or_else(|_| self.config.data_dir.clone());
            eprintln!(
                "\noxcart {VERSION} is running: {services}\n\n  API       {base}/api\n  Docs      {base}/docs\n  \
                 OpenAPI   {base}/openapi.json\n  Metrics   {base}/metrics\n  Health    {base}/health/ready\n  \
                 Data      {} ({database})\n\nCtrl-C stops it; in-flight requests finish first.\n",
                data.display()
            );
        }
    }
}
