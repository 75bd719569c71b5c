//! The SQL database handle shared by every service's store, with the inbox and checkpoint
//! helpers the consumer groups use. A crate of its own so that the storage adapters
//! (`oxcart-sql`, `oxcart-sqlite`, `oxcart-postgres`) need nothing of HTTP or auth.
//!
//! Stores are written once, in the SQL common to SQLite and PostgreSQL, against sqlx's
//! `Any` driver; the backend-specific parts (connection set-up, schema, event-store
//! position allocation) live in the adapter crates. A `Db` keeps writes and reads apart:
//! on SQLite the writer is a single connection, which serialises writers inside the
//! process instead of letting them fail with `SQLITE_BUSY`; on PostgreSQL reads that may
//! be stale go to the read replicas.
//!
//! # Working behind PgBouncer
//! PgBouncer in transaction pooling mode hands a client a different server connection
//! for every transaction, so anything kept in a server session is gone (or, worse,
//! someone else's) by the next one. Two rules follow, and every store keeps them by going
//! through this module:
//! - **Statements are never named.** [`query`], [`query_as`] and [`query_scalar`] mark
//!   every statement non-persistent once the process has opened a PostgreSQL pool, so
//!   sqlx uses the unnamed statement instead of a cached `sqlx_s_N` that the next server
//!   has never seen. On SQLite, where nothing pools sessions, they are persistent: each
//!   connection keeps its statements prepared, and a write skips SQLite's parser (that
//!   alone took the order pipeline from about 250 to 420 paid orders a second, its
//!   writer being bound by the cost of each statement).
//! - **Every statement runs inside a transaction.** sqlx prepares a statement and
//!   executes it in two round trips, each ended by a `Sync`; outside a transaction the
//!   pooler may switch servers between them. So [`Db::begin`] opens write transactions
//!   and [`Db::read`] and [`Db::read_primary`] open read-only ones; nothing runs on a
//!   bare pool. The same `BEGIN` sets the schema search path with `SET LOCAL`, which
//!   ends with the transaction instead of lingering in a session.

mod group;
pub mod schema;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Any, AnyConnection, AnyPool, FromRow, Row as _, Transaction};

/// Whether [`query`] and its kin mark statements persistent (prepared once, cached per
/// connection): [`CACHE_UNDECIDED`] until a database opens, then [`CACHE_ON`] for SQLite,
/// and [`CACHE_FORBIDDEN`] for good once any PostgreSQL pool opens, PgBouncer being
/// possible behind any of them. A process runs on one engine; only a test binary opens
/// both, and there the rule errs on the side of the unnamed statement.
static STATEMENT_CACHE: AtomicU8 = AtomicU8::new(CACHE_UNDECIDED);
const CACHE_UNDECIDED: u8 = 0;
const CACHE_ON: u8 = 1;
const CACHE_FORBIDDEN: u8 = 2;

/// Called before a PostgreSQL pool opens: from then on no statement of this process is
/// named (see the module's notes on PgBouncer).
pub fn forbid_named_statements() {
    STATEMENT_CACHE.store(CACHE_FORBIDDEN, Ordering::SeqCst);
}

fn persistent() -> bool {
    STATEMENT_CACHE.load(Ordering::Relaxed) == CACHE_ON
}

/// A write transaction, from [`Db::begin`]. Dropping it without [`Tx::commit`] rolls it
/// back.
pub struct Tx(TxKind);

enum TxKind {
    /// A transaction of its own (PostgreSQL, whose server already lets concurrent
    /// commits share a flush of its log).
    Own(Transaction<'static, Any>),
    /// One of a group that shares SQLite's commit (see `group`).
    Member(group::Member),
}

impl Tx {
    /// The engine it runs on, for the few statements that differ (only SQLite's
    /// transactions share its writer's commits; PostgreSQL's are each their own).
    pub fn backend(&self) -> Backend {
        match self.0 {
            TxKind::Own(_) => Backend::Postgres,
            TxKind::Member(_) => Backend::Sqlite,
        }
    }

    /// Commits; returns once the transaction is durable.
    pub async fn commit(self) -> sqlx::Result<()> {
        match self.0 {
            TxKind::Own(tx) => tx.commit().await,
            TxKind::Member(member) => member.commit().await,
        }
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self.0 {
            TxKind::Own(tx) => tx.rollback().await,
            TxKind::Member(member) => member.rollback().await,
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            TxKind::Own(tx) => tx,
            TxKind::Member(member) => member,
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            TxKind::Own(tx) => tx,
            TxKind::Member(member) => member,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    writer: AnyPool,
    /// SQLite's writer: transactions that queue for it share commits.
    group: Option<group::GroupWriter>,
    /// Where stale-tolerant reads go: SQLite's read-only pool, or PostgreSQL's replicas
    /// (the primary when none is configured).
    readers: Arc<[AnyPool]>,
    next_reader: Arc<AtomicUsize>,
    /// Whether `readers` are PostgreSQL replicas, which the primary can stand in for.
    replicas: bool,
    backend: Backend,
    /// The statement that opens a write transaction.
    begin_write: &'static str,
    /// The statement that opens a read; `None` reads on a plain pooled connection.
    begin_read: Option<&'static str>,
}

/// A connection to read on, from [`Db::read`] or [`Db::read_primary`]: either a pooled
/// connection or a read-only transaction, which is rolled back when it is dropped.
pub enum Conn {
    Pooled(PoolConnection<Any>),
    Tx(Transaction<'static, Any>),
}

impl Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Tx(tx) => tx,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Tx(tx) => tx,
        }
    }
}

impl Db {
    /// SQLite: one writer connection, and a pool of read-only connections that see every
    /// committed write (WAL mode), so reads need no transaction.
    pub fn sqlite(writer: AnyPool, reader: AnyPool) -> Self {
        // Takes the write lock up front, so a transaction that reads before it writes
        // cannot fail half way with a busy snapshot when another process wrote.
        let begin_write = "BEGIN IMMEDIATE";
        // Fails, leaving the statements unnamed, if a PostgreSQL pool opened before.
        let _ = STATEMENT_CACHE.compare_exchange(
            CACHE_UNDECIDED,
            CACHE_ON,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        Self {
            group: Some(group::GroupWriter::new(writer.clone(), begin_write)),
            writer,
            readers: Arc::from([reader]),
            next_reader: Arc::default(),
            replicas: false,
            backend: Backend::Sqlite,
            begin_write,
            begin_read: None,
        }
    }

    /// PostgreSQL: the primary, and the replicas that serve reads (none: the primary
    /// does). `search_path` lists the services' schemas.
    pub fn postgres(writer: AnyPool, replicas: Vec<AnyPool>, search_path: &str) -> Self {
        forbid_named_statements();
        let has_replicas = !replicas.is_empty();
        let readers: Arc<[AnyPool]> = if replicas.is_empty() {
            Arc::from([writer.clone()])
        } else {
            replicas.into()
        };
        // Leaked once per process start: the statements live as long as the pools.
        let begin_write = format!("BEGIN; SET LOCAL search_path TO {search_path}").leak();
        let begin_read = format!("BEGIN READ ONLY; SET LOCAL search_path TO {search_path}").leak();
        Self {
            writer,
            group: None,
            readers,
            next_reader: Arc::default(),
            replicas: has_replicas,
            backend: Backend::Postgres,
            begin_write,
            begin_read: Some(begin_read),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pools by name: `primary`, and `read` (SQLite's read-only pool) or `replica-1`,
    /// `replica-2`, … (PostgreSQL's replicas, when there are any).
    pub fn pools(&self) -> Vec<(String, &AnyPool)> {
        let mut pools = vec![("primary".to_owned(), &self.writer)];
        match self.backend {
            Backend::Sqlite => pools.extend(self.readers.iter().map(|p| ("read".to_owned(), p))),
            Backend::Postgres if self.replicas => pools.extend(
                self.readers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("replica-{}", i + 1), p)),
            ),
            Backend::Postgres => {}
        }
        pools
    }

    /// Starts a write transaction on the primary. On SQLite it may share its commit with
    /// others that queued for the writer meanwhile; either way `commit` returns once it is
    /// durable.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(Tx(match &self.group {
            Some(group) => TxKind::Member(group.begin().await?),
            None => TxKind::Own(begin_detached(&self.writer, self.begin_write).await?),
        }))
    }

    /// Physical commits on SQLite's writer, and the transactions they made durable.
    pub fn group_commits(&self) -> Option<(u64, u64)> {
        self.group.as_ref().map(group::GroupWriter::counts)
    }

    /// A connection for reads that may lag behind the latest writes: a replica's when
    /// replicas are configured (taken in turn), the primary's if the replica cannot be
    /// reached.
    pub async fn read(&self) -> sqlx::Result<Conn> {
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        match self.read_on(&self.readers[n]).await {
            Ok(conn) => Ok(conn),
            Err(error) if self.replicas => {
                tracing::warn!(%error, "read replica unavailable; reading from the primary");
                self.read_on(&self.writer).await
            }
            Err(error) => Err(error),
        }
    }

    /// A connection for reads that must see every committed write.
    pub async fn read_primary(&self) -> sqlx::Result<Conn> {
        match self.backend {
            // Every WAL reader sees the last commit.
            Backend::Sqlite => self.read_on(&self.readers[0]).await,
            Backend::Postgres => self.read_on(&self.writer).await,
        }
    }

    async fn read_on(&self, pool: &AnyPool) -> sqlx::Result<Conn> {
        Ok(match self.begin_read {
            Some(begin) => Conn::Tx(begin_detached(pool, begin).await?),
            None => Conn::Pooled(pool.acquire().await?),
        })
    }

    /// Applies `migrator` on the writer. (PostgreSQL migrations need a direct connection,
    /// which the adapter opens itself.)
    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
        if let Some(group) = &self.group {
            group.hand_back().await;
        }
        migrator.run(&self.writer).await
    }

    /// Rewrites the migration history of a database numbered the way this engine's
    /// migrations were before they moved to their owners (`old`), as
    /// [`schema::adopt`] describes; a no-op on any other.
    pub async fn adopt_history(
        &self,
        old: std::ops::RangeInclusive<i64>,
        migrator: &Migrator,
    ) -> Result<bool, sqlx::migrate::MigrateError> {
        if let Some(group) = &self.group {
            group.hand_back().await;
        }
        schema::adopt(&self.writer, old, migrator).await
    }

    /// Versions of `migrator` that the database has not applied.
    pub async fn unapplied_migrations(&self, migrator: &Migrator) -> sqlx::Result<Vec<i64>> {
        let applied: Vec<i64> = query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *self.read_primary().await?)
            .await?;
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Closes the pools, waiting for connections in use to be returned. On SQLite the
    /// write-ahead log is first folded into the database file and truncated, so a stopped
    /// oxcart leaves one self-contained file behind.
    pub async fn close(&self) {
        if let Some(group) = &self.group {
            group.hand_back().await;
        }
        if self.backend == Backend::Sqlite
            && let Err(error) = sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
        {
            tracing::warn!(%error, "could not checkpoint the write-ahead log");
        }
        for reader in self.readers.iter() {
            reader.close().await;
        }
        self.writer.close().await;
    }
}

/// A statement, named and cached only on SQLite (see the module's notes on PgBouncer).
/// Begins a transaction on `pool` with `statement` in a task of its own, so that a caller
/// cancelled while the `BEGIN` is in flight (a request past its timeout, an aborted task)
/// cannot leave a pooled connection inside a transaction. sqlx 0.8 queues a rollback only
/// for a `BEGIN` it has seen finish; cancelled halfway, the server is in the transaction
/// and the connection goes back to the pool as if idle, and its next user runs inside it
/// (`cannot execute INSERT in a read-only transaction`, when it was a read's). The task
/// always sees the `BEGIN` through; if no one waits for it any more, the transaction is
/// dropped there and rolled back before the connection is pooled again.
async fn begin_detached(
    pool: &AnyPool,
    statement: &'static str,
) -> sqlx::Result<Transaction<'static, Any>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin_with(statement).await })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("beginning a transaction: {e}")))?
}

pub fn query(sql: &str) -> Query<'_, Any, AnyArguments<'_>> {
    sqlx::query(sql).persistent(persistent())
}

/// A statement whose rows decode into `O`, named only on SQLite.
pub fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Any, O, AnyArguments<'q>>
where
    O: for<'r> FromRow<'r, AnyRow>,
{
    sqlx::query_as(sql).persistent(persistent())
}

/// A statement whose first column decodes into `O`, named only on SQLite.
pub fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Any, O, AnyArguments<'q>>
where
    (O,): for<'r> FromRow<'r, AnyRow>,
{
    sqlx::query_scalar(sql).persistent(persistent())
}

/// The position projection or consumer `name` has reached in the log (0 if it never ran).
pub async fn checkpoint(conn: &mut sqlx::AnyConnection, name: &str) -> sqlx::Result<i64> {
    let position: Option<i64> =
        query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
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
    query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(name)
    .bind(position)
    .execute(conn)
    .await
    .map(drop)
}

/// Claims event `event_id` for consumer group `consumer` in the inbox
/// (`processed_events`), on the transaction that applies it: false if the group has
/// applied it before (a redelivery, to be skipped). The claim commits or rolls back with
/// the group's effects, so an event is applied exactly when it is recorded.
pub async fn claim(
    conn: &mut sqlx::AnyConnection,
    consumer: &str,
    event_id: uuid::Uuid,
) -> sqlx::Result<bool> {
    Ok(claim_all(conn, consumer, &[event_id])
        .await?
        .contains(&event_id))
}

/// Claims for consumer group `consumer` the events `items` stand for (`event_id` of
/// each), in one statement, and returns the items claimed now, in their order: those
/// left out were applied before, and are redeliveries to skip. What a handler that writes
/// a polled batch in one transaction does first (`InTransaction`, the invoices).
pub async fn claim_fresh<T>(
    conn: &mut sqlx::AnyConnection,
    consumer: &str,
    items: Vec<T>,
    event_id: impl Fn(&T) -> uuid::Uuid,
) -> sqlx::Result<Vec<T>> {
    let ids: Vec<uuid::Uuid> = items.iter().map(&event_id).collect();
    let claimed = claim_all(conn, consumer, &ids).await?;
    Ok(items
        .into_iter()
        .filter(|item| claimed.contains(&event_id(item)))
        .collect())
}

/// Claims a batch of events for consumer group `consumer` in one statement, as [`claim`]
/// claims one: returns those claimed now, leaving out any the group has applied before.
/// A batch's claims are one round trip to the database where they were one an event.
pub async fn claim_all(
    conn: &mut sqlx::AnyConnection,
    consumer: &str,
    event_ids: &[uuid::Uuid],
) -> sqlx::Result<std::collections::HashSet<uuid::Uuid>> {
    if event_ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<String> = (0..event_ids.len())
        .map(|i| format!("($1, ${}, $2)", i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES {} \
         ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
        rows.join(", ")
    );
    let mut claim = query(&sql).bind(consumer).bind(timestamp(Utc::now()));
    for id in event_ids {
        claim = claim.bind(id.to_string());
    }
    let claimed = claim.fetch_all(conn).await?;
    claimed
        .iter()
        .map(|row| {
            let id: String = row.try_get("event_id")?;
            uuid::Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(e.into()))
        })
        .collect()
}

/// How many rows one multi-row statement writes at most: a batch of more is written in
/// chunks, which keeps each statement's parameters far below both engines' limits
/// (32,766 on SQLite, 65,535 on PostgreSQL) and the number of distinct statement texts,
/// each prepared and cached per connection on SQLite, small.
pub const ROWS_PER_STATEMENT: usize = 128;

/// `count` parameters numbered from `$first`, for an `IN` list: `params(3, 2)` is
/// `$2, $3, $4`.
pub fn params(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of a multi-row `VALUES`: `rows` tuples of `columns` parameters each,
/// numbered from `$first`. `values(2, 3, 1)` is `($1, $2, $3), ($4, $5, $6)`.
pub fn values(rows: usize, columns: usize, first: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", params(columns, first + row * columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Begins the transaction in which consumer group `consumer` applies event `event_id`,
/// with the event already [claimed](claim). `None` if the group has applied it before.
pub async fn begin_claimed(
    db: &Db,
    consumer: &str,
    event_id: uuid::Uuid,
) -> sqlx::Result<Option<Tx>> {
    let mut tx = db.begin().await?;
    if claim(&mut tx, consumer, event_id).await? {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// Whether consumer group `consumer` has applied event `event_id`: lets a handler skip
/// slow work (a call to a provider, an e-mail) for an event it has seen.
pub async fn claimed(db: &Db, consumer: &str, event_id: uuid::Uuid) -> sqlx::Result<bool> {
    let found: Option<i64> =
        query_scalar("SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id.to_string())
            .fetch_optional(&mut *db.read_primary().await?)
            .await?;
    Ok(found.is_some())
}

/// Whether a failed statement broke a unique constraint.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(sqlx::error::DatabaseError::is_unique_violation)
}

/// Whether a failed statement says the database is out of reach for now, worth retrying
/// (a client gets 503), rather than that the statement was wrong.
///
/// PostgreSQL says "unreachable" in several ways: a session cut by a restart or a
/// failover (SQLSTATE 57P01–57P03), a connection lost or refused (class 08, which is
/// also how PgBouncer reports a server connection that died under it), too many
/// connections (53300); and a connection that breaks mid-conversation surfaces as an I/O,
/// TLS or protocol error.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.message().contains("database is locked")
                || db.code().is_some_and(|code| {
                    code.starts_with("08") || code.starts_with("57P0") || code == "53300"
                })
        }
        _ => false,
    }
}

/// [`is_unreachable`] for any error: for the consumer runner, which must not count a
/// database outage against the event it was handling.
pub fn is_outage(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .is_some_and(is_unreachable)
}

/// Why a TLS handshake failed, when `error` (or anything in its chain) is one: rustls'
/// own words (`invalid peer certificate: UnknownIssuer`, `… NotValidForName`). A refused
/// certificate is a mistake in configuration that no retry mends, where a peer that is
/// down is not: the PostgreSQL adapter fails the start on the first only.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut at = Some(error);
    while let Some(error) = at {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An I/O error hides its inner error from `source()`: look inside it too.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(found) = tls_failure(inner)
        {
            return Some(found);
        }
        // So does an error shared behind an `Arc` (Redis's client keeps them so).
        if let Some(shared) =
            error.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
            && let Some(found) = tls_failure(&**shared)
        {
            return Some(found);
        }
        at = error.source();
    }
    None
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

/// A pool size that suits the machine: enough readers to use every core.
pub fn default_reader_connections() -> u32 {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() as u32 * 2)
        .clamp(2, 16)
}

/// How long a request may wait for a pooled connection before it is answered 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection pools' state, read at each scrape: `db_pool_connections{pool,state}`
/// (`in_use`, `idle`) and `db_pool_max_connections{pool}`. A pool whose connections are
/// all in use makes requests queue for one.
pub struct PoolMetrics {
    db: Db,
    connections: prometheus::IntGaugeVec,
    max: prometheus::IntGaugeVec,
}

impl PoolMetrics {
    pub fn new(db: Db) -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), labels)
                .expect("valid metric definition")
        };
        Self {
            db,
            connections: gauge(
                "db_pool_connections",
                "Database connections open in each pool, by state (in_use or idle)",
                &["pool", "state"],
            ),
            max: gauge(
                "db_pool_max_connections",
                "The most connections each database pool may open",
                &["pool"],
            ),
        }
    }
}

impl prometheus::core::Collector for PoolMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut desc = self.connections.desc();
        desc.extend(self.max.desc());
        // SQLite's group commit: physical commits, and the transactions they made
        // durable; their ratio is how many transactions share an fsync.
        if let Some(group) = &self.db.group {
            desc.extend(group.counters().into_iter().flat_map(|c| c.desc()));
        }
        desc
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        for (name, pool) in self.db.pools() {
            let open = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(open).min(open);
            self.connections
                .with_label_values(&[&name, "in_use"])
                .set(open - idle);
            self.connections
                .with_label_values(&[&name, "idle"])
                .set(idle);
            self.max
                .with_label_values(&[&name])
                .set(i64::from(pool.options().get_max_connections()));
        }
        let mut families = self.connections.collect();
        families.extend(self.max.collect());
        if let Some(group) = &self.db.group {
            families.extend(
                group
                    .counters()
                    .into_iter()
                    .flat_map(prometheus::core::Collector::collect),
            );
        }
        families
    }
}

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

    #[test]
    fn values_number_the_parameters_row_by_row() {
        assert_eq!(values(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 1, 4), "($4)");
        assert_eq!(params(3, 2), "$2, $3, $4");
    }

    /// A test binary may open SQLite after PostgreSQL (behind PgBouncer, perhaps); its
    /// statements must stay unnamed then. (Forbidding is for good, so this test only
    /// makes the other tests of this binary run on unnamed statements.)
    #[tokio::test]
    async fn sqlite_opened_after_postgres_leaves_statements_unnamed() {
        sqlx::any::install_default_drivers();
        forbid_named_statements();
        let pool = AnyPool::connect("sqlite::memory:").await.unwrap();
        let _db = Db::sqlite(pool.clone(), pool);
        assert!(!sqlx::Execute::persistent(&query("SELECT 1")));
    }
}
