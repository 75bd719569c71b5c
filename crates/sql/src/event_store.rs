use std::sync::LazyLock;

use async_trait::async_trait;
use oxcart_db::{self as db, Backend, Db};
use oxcart_events::outbox::Outbox;
use oxcart_events::store::{BoxError, prepare_append};
use oxcart_events::{
    Appended, Error, EventStore, Metadata, NewEvent, Position, RecordedEvent, StreamAppend,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

/// The event store on the `events` table.
///
/// Appends run in a write transaction (the store's own, or the caller's through
/// [`Outbox`]) that checks the stream's version and inserts the events; the
/// `(aggregate_id, version)` unique constraint backs the check up against writers in other
/// processes. After each commit the store rings its doorbell so in-process consumers and
/// projections wake at once.
///
/// Readers follow the log from a position, so an event must never become visible before
/// one they have already read past: a reader that has passed it would skip it for good.
/// SQLite's single writer gives that for free, and its log is in position order. On
/// PostgreSQL a sequence hands out positions at insert time, not at commit, and appends
/// commit concurrently; so each event records the transaction that wrote it (`tx`), the
/// log is read in `(tx, position)` order, and only up to the oldest transaction still
/// running, below which every transaction has ended (see the migration
/// `0010_commit_order.sql`). A reader's cursor is still the last position it read: the
/// next read starts after that event's `(tx, position)`.
#[derive(Debug)]
pub struct SqlEventStore {
    db: Db,
    head: watch::Sender<Position>,
}

const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, version, event_type, schema_version, occurred_at, user_id, metadata, data";

/// The log after a position: on SQLite in position order, which is commit order.
static READ_ALL_SQLITE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2")
});

/// The log after a position on PostgreSQL: in `(tx, position)` order from that event's
/// place (position 0, before the first event, sorts first), and only events of
/// transactions older than the oldest of this database's still running.
///
/// That horizon comes from the statement's own snapshot (`pg_current_snapshot()`), so
/// what it calls ended is exactly what the statement sees: its least running
/// transaction id, or where ids end if none runs. A transaction id the server says is
/// running in another database (`pg_stat_activity`) is left out, so that a long write
/// elsewhere on a shared server does not hold this log back; an id it cannot place (it
/// has just ended, or is this database's) counts, which can only hold the log back a
/// moment longer. A long write transaction in this database holds it back until it
/// ends, and loses nothing.
static READ_ALL_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH horizon AS ( \
             SELECT COALESCE(MIN(running), pg_snapshot_xmax(pg_current_snapshot())) AS tx \
             FROM pg_snapshot_xip(pg_current_snapshot()) AS running \
             WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity elsewhere \
                 WHERE elsewhere.backend_xid = running::xid \
                 AND elsewhere.datname IS DISTINCT FROM current_database())) \
         SELECT {COLUMNS} FROM events, horizon \
         WHERE (events.tx, position) > (COALESCE((SELECT tx FROM events WHERE position = $1), '0'::xid8), $1) \
         AND events.tx < horizon.tx \
         ORDER BY events.tx, position LIMIT $2"
    )
});

impl SqlEventStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            head: watch::Sender::new(0),
        }
    }
}

/// The version of the stream of `aggregate_id`, leaving out the events of `ours`: those
/// the failed append itself put in, which its rollback takes out.
async fn stream_version(
    conn: &mut AnyConnection,
    aggregate_id: Uuid,
    ours: &[&NewEvent],
) -> Result<u64, Error> {
    let sql = match ours.len() {
        0 => "SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = $1".to_owned(),
        n => format!(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = $1 \
             AND event_id NOT IN ({})",
            db::params(n, 2)
        ),
    };
    let mut query = db::query_scalar(&sql).bind(aggregate_id.to_string());
    for event in ours {
        query = query.bind(event.event_id.to_string());
    }
    let version: i64 = query.fetch_one(conn).await.map_err(backend)?;
    Ok(version as u64)
}

fn backend(error: sqlx::Error) -> Error {
    if db::is_unreachable(&error) {
        Error::Unavailable(error.into())
    } else {
        Error::Backend(error.into())
    }
}

fn decode(row: &AnyRow) -> Result<RecordedEvent, Error> {
    let position: Position = row.try_get("position").map_err(backend)?;
    let corrupt = |source: BoxError| Error::Corrupt { position, source };
    let text = |column: &str| {
        row.try_get::<String, _>(column)
            .map_err(|e| corrupt(e.into()))
    };
    let uuid = |value: String| value.parse::<Uuid>().map_err(|e| corrupt(e.into()));
    let user_id: Option<String> = row.try_get("user_id").map_err(|e| corrupt(e.into()))?;
    let metadata: Metadata =
        serde_json::from_str(&text("metadata")?).map_err(|e| corrupt(e.into()))?;
    let mut event = RecordedEvent {
        position,
        version: row
            .try_get::<i64, _>("version")
            .map_err(|e| corrupt(e.into()))? as u64,
        event: NewEvent {
            event_id: uuid(text("event_id")?)?,
            event_type: text("event_type")?,
            schema_version: u32::try_from(
                row.try_get::<i64, _>("schema_version")
                    .map_err(|e| corrupt(e.into()))?,
            )
            .map_err(|e| corrupt(e.into()))?,
            aggregate_type: text("aggregate_type")?,
            aggregate_id: uuid(text("aggregate_id")?)?,
            user_id: user_id.map(uuid).transpose()?,
            timestamp: db::parse_timestamp(&text("occurred_at")?).map_err(|e| corrupt(e.into()))?,
            data: serde_json::from_str(&text("data")?).map_err(|e| corrupt(e.into()))?,
            metadata,
        },
    };
    // Stored at the version it was written in; read in the current shape.
    oxcart_events::types::to_current(&mut event.event).map_err(|e| corrupt(e.into()))?;
    Ok(event)
}

#[async_trait]
impl Outbox for SqlEventStore {
    async fn append_in(
        &self,
        conn: &mut AnyConnection,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        let one = StreamAppend {
            aggregate_id,
            expected_version,
            events,
        };
        let appended = self.append_all_in(conn, vec![one]).await?;
        appended
            .into_iter()
            .next()
            .ok_or_else(|| Error::Backend("an append of one stream came back without it".into()))
    }

    async fn append_all_in(
        &self,
        conn: &mut AnyConnection,
        mut appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, Error> {
        let span = prepare_append(&mut appends)?;
        self.insert(conn, appends).instrument(span).await
    }

    fn committed(&self, position: Position) {
        self.head.send_replace(position);
    }
}

/// One event's row in a multi-row append.
struct Pending<'a> {
    stream: usize,
    version: u64,
    event: &'a NewEvent,
}

impl SqlEventStore {
    /// The appends themselves: every stream's version check and its inserts, in one
    /// statement for up to [`db::ROWS_PER_STATEMENT`] events. Version n of a stream goes
    /// in only if n - 1 is there, in the table or earlier in the same statement, and the
    /// stream's unique `(aggregate_id, version)` turns it away if n is taken; either way
    /// its row does not come back, and only then is a stream's version read, to say
    /// what it is. The caller's transaction is then to be rolled back, as after any
    /// failed append: the events of the other streams may be in.
    async fn insert(
        &self,
        conn: &mut AnyConnection,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, Error> {
        let rows: Vec<Pending<'_>> = appends
            .iter()
            .enumerate()
            .flat_map(|(stream, each)| {
                (each.expected_version + 1..)
                    .zip(&each.events)
                    .map(move |(version, event)| Pending {
                        stream,
                        version,
                        event,
                    })
            })
            .collect();
        let mut positions: std::collections::HashMap<Uuid, Position> =
            std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH v (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, \
                 occurred_at, user_id, metadata, data, chained, ord) AS (VALUES {}) \
                 INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, \
                 occurred_at, user_id, metadata, data) \
                 SELECT event_id, aggregate_type, aggregate_id, version, event_type, schema_version, \
                 occurred_at, user_id, metadata, data FROM v \
                 WHERE version = 1 OR chained = 1 \
                 OR EXISTS (SELECT 1 FROM events e WHERE e.aggregate_id = v.aggregate_id AND e.version = v.version - 1) \
                 ORDER BY ord \
                 ON CONFLICT (aggregate_id, version) DO NOTHING RETURNING position, event_id",
                db::values(chunk.len(), 12, 1)
            );
            let mut insert = db::query(&sql);
            let mut earlier = std::collections::HashSet::with_capacity(chunk.len());
            for (ord, row) in chunk.iter().enumerate() {
                let event = row.event;
                let aggregate_id = appends[row.stream].aggregate_id;
                // The previous version is earlier in this statement: the check above
                // cannot see it, and its own check stands for both.
                let chained = earlier.contains(&(aggregate_id, row.version - 1));
                earlier.insert((aggregate_id, row.version));
                insert = insert
                    .bind(event.event_id.to_string())
                    .bind(&event.aggregate_type)
                    .bind(aggregate_id.to_string())
                    .bind(row.version as i64)
                    .bind(&event.event_type)
                    .bind(i64::from(event.schema_version))
                    .bind(db::timestamp(event.timestamp))
                    .bind(event.user_id.map(|u| u.to_string()))
                    .bind(
                        serde_json::to_string(&event.metadata)
                            .map_err(|e| Error::Backend(e.into()))?,
                    )
                    .bind(serde_json::to_string(&event.data).map_err(|e| Error::Backend(e.into()))?)
                    .bind(i64::from(chained))
                    .bind(ord as i64);
            }
            for row in insert.fetch_all(&mut *conn).await.map_err(backend)? {
                let id: String = row.try_get("event_id").map_err(backend)?;
                let id = id
                    .parse()
                    .map_err(|e: uuid::Error| Error::Backend(e.into()))?;
                positions.insert(id, row.try_get("position").map_err(backend)?);
            }
        }
        let mut appended = Vec::with_capacity(appends.len());
        for each in &appends {
            let mut position = 0;
            for event in &each.events {
                match positions.get(&event.event_id) {
                    Some(&at) => position = at,
                    None => {
                        let ours: Vec<&NewEvent> = each
                            .events
                            .iter()
                            .filter(|e| positions.contains_key(&e.event_id))
                            .collect();
                        return Err(Error::Conflict {
                            aggregate_id: each.aggregate_id,
                            expected: each.expected_version,
                            actual: stream_version(conn, each.aggregate_id, &ours).await?,
                        });
                    }
                }
            }
            appended.push(Appended {
                version: each.expected_version + each.events.len() as u64,
                position,
            });
        }
        Ok(appended)
    }
}

#[async_trait]
impl EventStore for SqlEventStore {
    async fn append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        let one = StreamAppend {
            aggregate_id,
            expected_version,
            events,
        };
        let appended = self.append_many(vec![one]).await?;
        appended
            .into_iter()
            .next()
            .ok_or_else(|| Error::Backend("an append of one stream came back without it".into()))
    }

    /// One transaction for every stream: one commit, and on SQLite one fsync.
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, Error> {
        let mut tx = self.db.begin().await.map_err(backend)?;
        let appended = match self.append_all_in(&mut tx, appends).await {
            Ok(appended) => appended,
            Err(error) => {
                // A conflict may be with an append not yet durable (SQLite's group
                // commit): the rollback returns once it is, so that the caller, who
                // will read the stream to see what won, finds it there.
                let _ = tx.rollback().await;
                return Err(error);
            }
        };
        tx.commit().await.map_err(backend)?;
        if let Some(last) = appended.iter().map(|one| one.position).max() {
            self.committed(last);
        }
        Ok(appended)
    }

    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<RecordedEvent>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE aggregate_id = $1 ORDER BY version");
        let rows = db::query(&sql)
            .bind(aggregate_id.to_string())
            .fetch_all(&mut *self.db.read_primary().await.map_err(backend)?)
            .await
            .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let sql = match self.db.backend() {
            Backend::Sqlite => &*READ_ALL_SQLITE,
            Backend::Postgres => &*READ_ALL_POSTGRES,
        };
        let rows = db::query(sql)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.db.read_primary().await.map_err(backend)?)
            .await
            .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    /// The last position in the log's order.
    async fn head(&self) -> Result<Position, Error> {
        let sql = match self.db.backend() {
            Backend::Sqlite => "SELECT COALESCE(MAX(position), 0) FROM events",
            Backend::Postgres => {
                "SELECT COALESCE((SELECT position FROM events ORDER BY tx DESC, position DESC LIMIT 1), 0)"
            }
        };
        db::query_scalar(sql)
            .fetch_one(&mut *self.db.read_primary().await.map_err(backend)?)
            .await
            .map_err(backend)
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
