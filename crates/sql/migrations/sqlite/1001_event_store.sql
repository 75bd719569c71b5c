-- The event store: one append-only log holding every aggregate's stream. Projections and
-- consumers follow it by position; in the all-in-one it is also the embedded event log.
CREATE TABLE events (
    -- Global order. AUTOINCREMENT never reuses a position, and SQLite's single writer
    -- means positions are assigned in commit order, so a reader never skips one.
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    TEXT    NOT NULL,
    user_id        TEXT,
    metadata       TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    -- Optimistic concurrency: two writers cannot both add version n to a stream.
    UNIQUE (aggregate_id, version)
);

CREATE TRIGGER events_are_append_only_on_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_are_append_only_on_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- Where each projection has got to in the log, updated in the same transaction as the
-- read-model rows it wrote.
CREATE TABLE projection_checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);
