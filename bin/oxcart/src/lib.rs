//! The oxcart composition root: which services run in this process, and how they are
//! wired to storage and to each other. `main.rs` only parses the command line.
//!
//! # Layout
//! - [`config`]: layered configuration.
//! - [`App`]: builds the services a process runs, serves them, drains on shutdown.
//! - [`openapi`]: the OpenAPI document of a set of services.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::{Extension, Router};
use oxcart_catalog::Catalog;
use oxcart_events::projection::ProjectionRunner;
use oxcart_events::store::BoxError;
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::read_model::{OrderProjection, OrderReadModel};
use oxcart_orders::{Orders, ProductCatalog};
use oxcart_platform::auth::SigningKey;
use oxcart_platform::db::{self, Db};
use oxcart_platform::health::Health;
use oxcart_platform::metrics::Metrics;
use oxcart_platform::shutdown::Tasks;
use oxcart_platform::{docs, http};
use oxcart_sqlite::{MIGRATOR, SqliteEventStore};
use oxcart_users::Users;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, Service, Services};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Opens the configured database. (PostgreSQL arrives with distributed mode.)
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let url = config.database_url();
    let path = oxcart_sqlite::path_from_url(&url).with_context(|| {
        format!("unsupported DATABASE_URL `{url}`: this build runs on SQLite (sqlite:<path>)")
    })?;
    Ok(oxcart_sqlite::connect(&path, &config.sqlite()).await?)
}

/// The token signing key: from configuration, or kept in the data directory.
pub fn signing_key(config: &Config) -> anyhow::Result<Arc<SigningKey>> {
    let key = match &config.jwt_private_key {
        Some(pem) => SigningKey::from_pem(pem.expose_secret()).context("OXCART_JWT_PRIVATE_KEY")?,
        None => SigningKey::load_or_generate(&config.signing_key_path())?,
    };
    Ok(Arc::new(key))
}

/// The OpenAPI document of `services`, complete with what the shared layers add.
pub fn openapi(services: &Services) -> OpenApi {
    let mut api = OpenApiRouter::<()>::new().into_openapi();
    let mut tags = Vec::new();
    for service in services.iter() {
        let (part, description) = match service {
            Service::Users => (
                oxcart_users::http::routes().into_openapi(),
                "Accounts and access tokens.",
            ),
            Service::Catalog => (
                oxcart_catalog::http::routes().into_openapi(),
                "Products, prices and stock.",
            ),
            Service::Orders => (
                oxcart_orders::http::routes().into_openapi(),
                "Orders: placed, cancelled, and read back.",
            ),
        };
        api.merge(part);
        tags.push(
            TagBuilder::new()
                .name(service.name())
                .description(Some(description))
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

/// Orders read prices through this port; in one process it is the catalog itself.
struct LocalCatalog(Catalog);

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

/// A built process: bound to its port, ready to run.
pub struct App {
    config: Config,
    db: Db,
    router: Router,
    listener: TcpListener,
    projections: Vec<ProjectionRunner>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        if config.migrate {
            db.migrate(&MIGRATOR).await.context("applying migrations")?;
        }
        let key = signing_key(&config)?;
        let metrics = Metrics::new();
        let health = Health::default()
            .with(db::Reachable(db.clone()))
            .with(db::Migrated(db.clone(), &MIGRATOR));
        let store = Arc::new(SqliteEventStore::new(db.clone()));

        let mut api = OpenApiRouter::new();
        let mut projections = Vec::new();
        for service in config.services.iter() {
            api = match service {
                Service::Users => api.merge(oxcart_users::http::router(Users::new(
                    db.clone(),
                    Arc::clone(&key),
                    &config.users(),
                ))),
                Service::Catalog => {
                    api.merge(oxcart_catalog::http::router(Catalog::new(db.clone())))
                }
                Service::Orders => {
                    let runner = ProjectionRunner::new(
                        store.clone(),
                        Arc::new(OrderProjection::new(db.clone())),
                    );
                    let orders = Orders::new(
                        store.clone(),
                        Arc::new(LocalCatalog(Catalog::new(db.clone()))),
                        OrderReadModel::new(db.clone()),
                        config.read_wait,
                    )
                    .with_progress(runner.progress());
                    projections.push(runner);
                    api.merge(oxcart_orders::http::router(orders))
                }
            };
        }
        // The served document comes from `openapi()`, not from this router, so that it is
        // exactly the one `oxcart openapi` prints and the contract snapshot checks.
        let (routes, _) = api.split_for_parts();
        let router = routes
            .merge(health.router())
            .merge(metrics.router())
            .merge(docs::router(&openapi(&config.services)))
            .layer(Extension(key.verifier()));
        let router = http::finish(router, &config.http(), &metrics);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            config,
            db,
            router,
            listener,
            projections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
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
            tasks.spawn("order-projection", runner.run(token));
        }
        http::serve(
            self.listener,
            self.router,
            shutdown,
            self.config.shutdown_grace,
        )
        .await?;
        tasks.shutdown(Duration::from_secs(10)).await;
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    fn announce(&self, addr: SocketAddr) {
        let base = format!("http://{addr}");
        let database = self.config.database_url();
        let services = self.config.services.to_string();
        tracing::info!(
            address = %addr,
            services = %services,
            docs = %format!("{base}/docs"),
            metrics = %format!("{base}/metrics"),
            database = %database,
            version = VERSION,
            "listening"
        );
        if !self.config.log_format.is_json() {
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
