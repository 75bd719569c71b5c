//! The SQL database handle shared by every service's store.
//!
//! Stores are written once, in the SQL common to SQLite and PostgreSQL, against sqlx's
//! `Any` driver; the backend-specific parts (connection set-up, schema, event-store
//! position allocation) live in the adapter crates. A `Db` keeps writes and reads on
//! separate pools: on SQLite the writer is a single connection, which serialises writers
//! inside the process instead of letting them fail with `SQLITE_BUSY`; on PostgreSQL the
//! reader pool is where read replicas plug in.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Transaction};

use crate::health::Check;
use crate::problem::ProblemKind;

pub type Tx = Transaction<'static, Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
}

impl Db {
    pub fn new(writer: AnyPool, reader: AnyPool, backend: Backend) -> Self {
        Self {
            writer,
            reader,
            backend,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for statements that write, and for reads that must see the latest writes.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The pool for queries that may be served by a replica.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes cannot fail half
    /// way with a busy snapshot when another process wrote in between.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
        migrator.run(&self.writer).await
    }

    /// Versions of `migrator` that the database has not applied.
    pub async fn unapplied_migrations(&self, migrator: &Migrator) -> sqlx::Result<Vec<i64>> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.reader)
                .await?;
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Closes both pools, waiting for connections in use to be returned. On SQLite the
    /// write-ahead log is first folded into the database file and truncated, so a stopped
    /// oxcart leaves one self-contained file behind.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite
            && let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
        {
            tracing::warn!(%error, "could not checkpoint the write-ahead log");
        }
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The position projection or consumer `name` has reached in the log (0 if it never ran).
pub async fn checkpoint(conn: &mut sqlx::AnyConnection, name: &str) -> sqlx::Result<i64> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(position.unwrap_or(0))
}

/// Records that `name` has reached `position`; call inside the transaction that applied it.
pub async fn save_checkpoint(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(name)
    .bind(position)
    .execute(conn)
    .await
    .map(drop)
}

/// Begins the transaction in which consumer group `consumer` applies event `event_id`,
/// with the event already claimed in the inbox (`processed_events`). `None` if the group
/// has applied it before: a redelivery, to be skipped. The claim commits or rolls back
/// with the group's effects, so an event is applied exactly when it is recorded.
pub async fn begin_claimed(
    db: &Db,
    consumer: &str,
    event_id: uuid::Uuid,
) -> sqlx::Result<Option<Tx>> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(timestamp(Utc::now()))
    .execute(&mut *tx)
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(tx))
}

/// Whether consumer group `consumer` has applied event `event_id`: lets a handler skip
/// slow work (a call to a provider, an e-mail) for an event it has seen.
pub async fn claimed(db: &Db, consumer: &str, event_id: uuid::Uuid) -> sqlx::Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id.to_string())
            .fetch_optional(db.reader())
            .await?;
    Ok(found.is_some())
}

/// Whether a failed statement broke a unique constraint.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(sqlx::error::DatabaseError::is_unique_violation)
}

/// How a storage failure should reach a client: an overloaded or unreachable database is
/// a 503 worth retrying; anything else is a 500.
pub fn problem_kind(error: &sqlx::Error) -> ProblemKind {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ProblemKind::Unavailable
        }
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            ProblemKind::Unavailable
        }
        _ => ProblemKind::Internal,
    }
}

/// Timestamps are stored as RFC 3339 text in UTC with microseconds, which sorts
/// chronologically as text on both backends.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

/// The current time truncated to what the database keeps, so that a value read back
/// equals the one written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    parse_timestamp(&timestamp(now)).unwrap_or(now)
}

/// Readiness: the database answers.
pub struct Reachable(pub Db);

#[async_trait::async_trait]
impl Check for Reachable {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(self.0.reader())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Readiness: every migration this build knows of has been applied.
pub struct Migrated(pub Db, pub &'static Migrator);

#[async_trait::async_trait]
impl Check for Migrated {
    fn name(&self) -> &'static str {
        "migrations"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.unapplied_migrations(self.1).await {
            Ok(missing) if missing.is_empty() => Ok(()),
            Ok(missing) => Err(format!(
                "{} migrations not applied; run `oxcart migrate`",
                missing.len()
            )),
            Err(error) => Err(format!(
                "migrations not applied ({error}); run `oxcart migrate`"
            )),
        }
    }
}

/// A pool size that suits the machine: enough readers to use every core.
pub fn default_reader_connections() -> u32 {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() as u32 * 2)
        .clamp(2, 16)
}

/// How long a request may wait for a pooled connection before it is answered 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text_and_round_trip() {
        let a = parse_timestamp("2026-01-02T03:04:05.000006Z").unwrap();
        let b = a + chrono::Duration::microseconds(1);
        assert!(timestamp(a) < timestamp(b));
        assert_eq!(parse_timestamp(&timestamp(a)).unwrap(), a);
        let now = now();
        assert_eq!(parse_timestamp(&timestamp(now)).unwrap(), now);
    }
}
