//! A process built from its parts: bound to its port, its consumers and projections ready,
//! a sampler for what no event updates; then served until shutdown, and drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::{Extension, Router};
use oxcart_db::{self as db, Db};
use oxcart_events::consumer::{ConsumerMetrics, ConsumerRunner, DeadLetters};
use oxcart_events::projection::ProjectionRunner;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, Position};
use oxcart_platform::auth::RevokedSessions;
use oxcart_platform::health::{self, Health};
use oxcart_platform::housekeeping::Housekeeping;
use oxcart_platform::limit::Limits;
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::Parts;
use oxcart_platform::shutdown::Tasks;
use oxcart_platform::{docs, http};
use oxcart_sql::SqlEventStore;
use oxcart_sql::housekeeping::{Inbox, ResolvedDeadLetters};
use prometheus::IntCounter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::transport::{Background, Transport};
use crate::{Peers, VERSION, assemble, migrate, migrator, open_database, openapi, signing_key};

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

/// The process's chores: its services' own (`parts.chores`, taken), and the pruning of
/// its consumer groups' inbox rows and of resolved dead letters.
fn housekeeping(config: &Config, db: &Db, parts: &mut Parts, metrics: &Metrics) -> Housekeeping {
    let settings = &config.housekeeping;
    let groups: Vec<&'static str> = parts.handlers.iter().map(|h| h.group()).collect();
    let inbox = match config.kafka.brokers {
        // Kafka keeps the groups' offsets; only its retention says what it cannot deliver
        // again.
        Some(_) => Inbox::older_than(db.clone(), groups, settings.inbox_retention),
        None => Inbox::passed(db.clone(), groups),
    };
    let mut chores = std::mem::take(&mut parts.chores);
    chores.push(Arc::new(inbox));
    chores.push(Arc::new(ResolvedDeadLetters {
        db: db.clone(),
        retention: settings.dead_letter_retention,
    }));
    Housekeeping::new(chores, settings.interval, metrics)
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
    housekeeping: Housekeeping,
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
        let mut parts = assemble(&config, &db, &sql_store, &key, &metrics, &peers)?;
        let housekeeping = housekeeping(&config, &db, &mut parts, &metrics);
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
            .layer(Extension(key.verifier()))
            .layer(Extension(RevokedSessions(Arc::clone(&peers.revocations))));
        let limits = Limits::new(
            &config.rate_limit,
            Arc::clone(&peers.limits),
            key.verifier(),
            &metrics,
        )
        .map_err(anyhow::Error::msg)?;
        let router = http::finish(router, &config.http, &metrics, Some(limits))
            .map_err(anyhow::Error::msg)?;
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
            housekeeping,
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
        let token = tasks.token().clone();
        tasks.spawn("housekeeping", self.housekeeping.run(token));
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
