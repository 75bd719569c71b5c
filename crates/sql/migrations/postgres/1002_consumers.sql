-- The inbox: every event a consumer group has applied, recorded in the same transaction
-- as the group's effects, so a redelivered event is recognised and skipped.
CREATE TABLE eventlog.processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer group gave up on after its last attempt, kept whole (the envelope as
-- JSON) so that `oxcart dlq replay` can run them again.
CREATE TABLE eventlog.dead_letters (
    id          TEXT   COLLATE "C" PRIMARY KEY,
    consumer    TEXT   NOT NULL,
    event_id    TEXT   NOT NULL,
    event       TEXT   NOT NULL,
    error       TEXT   NOT NULL,
    attempts    BIGINT NOT NULL,
    parked_at   TEXT   COLLATE "C" NOT NULL,
    resolved_at TEXT,
    UNIQUE (consumer, event_id)
);
