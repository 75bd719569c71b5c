use async_trait::async_trait;
use oxcart_events::outbox::Outbox;
use oxcart_events::store::{BoxError, check_stream};
use oxcart_events::trace;
use oxcart_events::{
    Appended, Error, EventStore, Metadata, NewEvent, Position, RecordedEvent, StreamAppend,
};
use oxcart_platform::db::{self, Backend, Db};
use oxcart_platform::problem::ProblemKind;
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
/// Readers follow the log by position, so a position must never become visible after a
/// higher one: a reader that has passed it would skip it for good. SQLite's single writer
/// gives that for free. On PostgreSQL a sequence hands out numbers at insert time, not at
/// commit, so appends first take a transaction-scoped advisory lock: the next append
/// waits until this one has committed, and positions appear in commit order. That
/// serialises appends, as SQLite's writer does; the lock is taken at the last moment and
/// held only until the commit.
#[derive(Debug)]
pub struct SqlEventStore {
    db: Db,
    head: watch::Sender<Position>,
}

/// The advisory lock key that serialises appends on PostgreSQL ("oxcart" in ASCII).
const APPEND_LOCK: i64 = 0x6f_78_63_61_72_74;

const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, version, event_type, schema_version, occurred_at, user_id, metadata, data";

impl SqlEventStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            head: watch::Sender::new(0),
        }
    }
}

async fn stream_version(conn: &mut AnyConnection, aggregate_id: &str) -> Result<u64, Error> {
    let version: i64 =
        db::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(conn)
            .await
            .map_err(backend)?;
    Ok(version as u64)
}

fn backend(error: sqlx::Error) -> Error {
    match db::problem_kind(&error) {
        ProblemKind::Unavailable => Error::Unavailable(error.into()),
        _ => Error::Backend(error.into()),
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
    Ok(RecordedEvent {
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
    })
}

#[async_trait]
impl Outbox for SqlEventStore {
    async fn append_in(
        &self,
        conn: &mut AnyConnection,
        aggregate_id: Uuid,
        expected_version: u64,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        check_stream(aggregate_id, &events)?;
        let span = trace::append_span(&events);
        trace::stamp(&span, &mut events);
        self.insert(conn, aggregate_id, expected_version, events)
            .instrument(span)
            .await
    }

    fn committed(&self, position: Position) {
        self.head.send_replace(position);
    }
}

impl SqlEventStore {
    /// The append itself: the version check and the inserts.
    async fn insert(
        &self,
        conn: &mut AnyConnection,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        if self.db.backend() == Backend::Postgres {
            db::query("SELECT pg_advisory_xact_lock($1)")
                .bind(APPEND_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        let id = aggregate_id.to_string();
        let mut appended = Appended {
            version: expected_version,
            position: 0,
        };
        for event in events {
            appended.version += 1;
            // The version check is part of the insert, so an append costs one statement
            // an event: version n goes in only if n - 1 is there, and the stream's unique
            // (aggregate_id, version) turns it away if n is taken. Either way no row comes
            // back, and only then is the stream's version read, to say what it is.
            let inserted = db::query(
                "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version, \
                 occurred_at, user_id, metadata, data) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                 WHERE $4 = 1 OR EXISTS (SELECT 1 FROM events WHERE aggregate_id = $3 AND version = $4 - 1) \
                 ON CONFLICT (aggregate_id, version) DO NOTHING RETURNING position",
            )
            .bind(event.event_id.to_string())
            .bind(&event.aggregate_type)
            .bind(&id)
            .bind(appended.version as i64)
            .bind(&event.event_type)
            .bind(i64::from(event.schema_version))
            .bind(db::timestamp(event.timestamp))
            .bind(event.user_id.map(|u| u.to_string()))
            .bind(serde_json::to_string(&event.metadata).map_err(|e| Error::Backend(e.into()))?)
            .bind(serde_json::to_string(&event.data).map_err(|e| Error::Backend(e.into()))?)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            match inserted {
                Some(row) => appended.position = row.try_get("position").map_err(backend)?,
                None => {
                    let actual = stream_version(conn, &id).await?;
                    return Err(Error::Conflict {
                        aggregate_id,
                        expected: expected_version,
                        actual,
                    });
                }
            }
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
        let mut appended = Vec::with_capacity(appends.len());
        for each in appends {
            match self
                .append_in(
                    &mut tx,
                    each.aggregate_id,
                    each.expected_version,
                    each.events,
                )
                .await
            {
                Ok(one) => appended.push(one),
                Err(error) => {
                    // A conflict may be with an append not yet durable (SQLite's group
                    // commit): the rollback returns once it is, so that the caller, who
                    // will read the stream to see what won, finds it there.
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            }
        }
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
        let sql =
            format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2");
        let rows = db::query(&sql)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.db.read_primary().await.map_err(backend)?)
            .await
            .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn head(&self) -> Result<Position, Error> {
        db::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *self.db.read_primary().await.map_err(backend)?)
            .await
            .map_err(backend)
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
