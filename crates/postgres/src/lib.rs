//! The PostgreSQL adapter: distributed mode's database.
//!
//! [`connect`] opens a pool on the primary and one on each read replica, and [`migrate`]
//! applies [`MIGRATOR`], composed from its owners' migrations (`oxcart_db::schema`), which
//! keep each service's tables in a schema of its own. The
//! stores are the same as on SQLite (see `oxcart-db` for how they stay safe behind
//! PgBouncer in transaction pooling mode).
//!
//! Migrations need a session of their own: sqlx's migrator holds a session-level advisory
//! lock while it works and prepares named statements, neither of which survives a
//! transaction-pooling PgBouncer. [`migrate`] therefore takes a URL of its own, which
//! should point at the primary directly (`DATABASE_MIGRATION_URL`); everything else may
//! go through the pooler.

use std::time::Duration;

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use oxcart_db::schema;
use oxcart_db::{self as db, Db};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;

/// The whole PostgreSQL schema: every owner's migrations (`oxcart_db::schema`), found by
/// `build.rs` in each crate with a `migrations/postgres` directory.
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| schema::compose(&include!(concat!(env!("OUT_DIR"), "/owners.rs"))));

/// The numbering this engine's migrations had before they moved to their owners.
const NUMBERED_BY_ENGINE: RangeInclusive<i64> = 1..=10;

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// sqlx pings every connection as it goes back to the pool (which also sends a dropped
/// transaction's rollback), so one returned a moment ago is known to be alive; sqlx's
/// default of pinging it again on the way out cost a round trip to the server per
/// transaction, about 14 % of the CPU an order took in distributed mode (alternated
/// benchmark runs). Under load a connection waits milliseconds between uses; after a
/// server restart, which takes longer than this, every pooled connection has been idle
/// past it, so a dead one is still found and replaced before a request gets it.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Every service's schema, then the shared event log's. Table names are unique across
/// them, so the stores' SQL names tables without a schema, as on SQLite.
pub const SEARCH_PATH: &str = "users, catalog, orders, payments, notifications, invoices, analytics, webhooks, eventlog, public";

/// The `[database.postgres]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// Connections each pool (the primary's, and each replica's) may open. A
    /// `pool_size=` parameter in a URL, as in the spec's `DATABASE_URL`, overrides it for
    /// that URL's pool.
    pub max_connections: u32,
    /// Connections each pool keeps open when idle.
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before it is answered 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long a connection may sit idle before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: db::ACQUIRE_TIMEOUT,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a PostgreSQL URL (expected postgres://user@host:port/database)")]
    NotPostgres(String),
    #[error("`pool_size` in `{0}` is not a positive number")]
    PoolSize(String),
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply the PostgreSQL migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Splits the spec's `pool_size=` parameter, which is the pool's and not the server's,
/// off a URL.
fn pool_size(url: &str) -> Result<(String, Option<u32>), Error> {
    if !is_postgres_url(url) {
        return Err(Error::NotPostgres(redact(url)));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut size = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("pool_size=") {
            Some(n) => {
                size = Some(
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Error::PoolSize(redact(url)))?,
                );
            }
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, size))
}

/// A URL fit for a log line or an error: any password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn pool(url: &str, config: &PgConfig, lazy: bool) -> Result<sqlx::AnyPool, Error> {
    // Before the first connection: PgBouncer may stand behind this URL.
    db::forbid_named_statements();
    let (stripped, size) = pool_size(url)?;
    let connect = |source| Error::Connect {
        url: redact(url),
        source,
    };
    let options: AnyConnectOptions = stripped.parse().map_err(connect)?;
    let pool = AnyPoolOptions::new()
        .max_connections(size.unwrap_or(config.max_connections).max(1))
        .min_connections(config.min_connections)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        });
    if lazy {
        Ok(pool.connect_lazy_with(options))
    } else {
        pool.connect_with(options).await.map_err(connect)
    }
}

/// Opens the primary (at once, so a wrong URL fails the start) and the replicas (as they
/// are first used, so a replica that is down does not). Each replica is tried once: a
/// certificate refused there is a mistake in its URL that no retry mends, and fails
/// the start like the primary's would.
pub async fn connect(url: &str, replica_urls: &[String], config: &PgConfig) -> Result<Db, Error> {
    sqlx::any::install_default_drivers();
    let writer = pool(url, config, false).await?;
    let mut replicas = Vec::with_capacity(replica_urls.len());
    for replica in replica_urls {
        let pool = pool(replica, config, true).await?;
        match pool.acquire().await {
            Ok(_) => {}
            Err(source) if db::tls_failure(&source).is_some() => {
                return Err(Error::Connect {
                    url: redact(replica),
                    source,
                });
            }
            Err(error) => {
                tracing::warn!(%error, replica = %redact(replica), "read replica unavailable; the primary serves reads until it answers");
            }
        }
        replicas.push(pool);
    }
    Ok(Db::postgres(writer, replicas, SEARCH_PATH))
}

/// Applies the migrations over one direct connection to the primary.
pub async fn migrate(url: &str) -> Result<(), Error> {
    sqlx::any::install_default_drivers();
    let pool = pool(
        url,
        &PgConfig {
            max_connections: 1,
            ..PgConfig::default()
        },
        false,
    )
    .await?;
    let applied = match db::schema::adopt(&pool, NUMBERED_BY_ENGINE, &MIGRATOR).await {
        Ok(_) => MIGRATOR.run(&pool).await,
        Err(error) => Err(error),
    };
    pool.close().await;
    Ok(applied?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_s_pool_size_is_the_pool_s() {
        let (url, size) =
            pool_size("postgresql://user:pass@pgbouncer:6432/production?pool_size=10").unwrap();
        assert_eq!(url, "postgresql://user:pass@pgbouncer:6432/production");
        assert_eq!(size, Some(10));
        let (url, size) =
            pool_size("postgres://u@h/db?sslmode=disable&pool_size=3&application_name=x").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable&application_name=x");
        assert_eq!(size, Some(3));
        assert_eq!(pool_size("postgres://u@h/db").unwrap().1, None);
        assert!(matches!(
            pool_size("postgres://u@h/db?pool_size=0"),
            Err(Error::PoolSize(_))
        ));
        assert!(matches!(
            pool_size("sqlite:x.db"),
            Err(Error::NotPostgres(_))
        ));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/oxcart"),
            "postgres://app:***@db:5432/oxcart"
        );
        assert_eq!(
            redact("postgres://app@db/oxcart"),
            "postgres://app@db/oxcart"
        );
        let error = pool_size("postgres://app:s3cret@db/x?pool_size=-1").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
