-- oxcart on PostgreSQL: one schema per service, and `eventlog` for what they share, the
-- event log and the consumer groups' bookkeeping. Every transaction oxcart opens sets
-- `search_path` to all of them (`SET LOCAL`, so it never outlives the transaction and
-- works behind PgBouncer), which lets the stores' SQL name tables without a schema, as
-- it does on SQLite.
--
-- Text that is sorted or compared for paging (times, ids, names) uses the "C" collation,
-- so it orders byte by byte as on SQLite, whatever the database's locale.
CREATE SCHEMA eventlog;

-- The event store: one append-only log holding every aggregate's stream. Projections and
-- consumers follow it by position, and the relay publishes it to Kafka.
CREATE TABLE eventlog.events (
    -- Global order. Appends take an advisory lock until they commit (see `SqlEventStore`),
    -- so positions become visible in order and a reader never skips one.
    position       BIGSERIAL PRIMARY KEY,
    event_id       TEXT   NOT NULL UNIQUE,
    aggregate_type TEXT   NOT NULL,
    aggregate_id   TEXT   NOT NULL,
    version        BIGINT NOT NULL CHECK (version >= 1),
    event_type     TEXT   NOT NULL,
    schema_version BIGINT NOT NULL,
    occurred_at    TEXT   NOT NULL,
    user_id        TEXT,
    metadata       TEXT   NOT NULL,
    data           TEXT   NOT NULL,
    -- Optimistic concurrency: two writers cannot both add version n to a stream.
    UNIQUE (aggregate_id, version)
);

CREATE FUNCTION eventlog.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;

CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON eventlog.events
    FOR EACH ROW EXECUTE FUNCTION eventlog.refuse_change();
CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON eventlog.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventlog.refuse_change();

-- Where each projection and consumer group has got to in the log, updated in the same
-- transaction as what it wrote.
CREATE TABLE eventlog.projection_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
