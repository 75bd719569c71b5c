-- Consumer groups keep their positions in projection_checkpoints, beside the projections.
-- The order projection takes the name of its consumer group in the brief.
UPDATE projection_checkpoints SET name = 'order-projection' WHERE name = 'order-read-model';

-- The inbox: every event a consumer group has applied, recorded in the same transaction
-- as the group's effects, so a redelivered event is recognised and skipped.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer group gave up on after its last attempt, kept whole (the envelope as
-- JSON) so that `oxcart dlq replay` can run them again.
CREATE TABLE dead_letters (
    id          TEXT    PRIMARY KEY,
    consumer    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    parked_at   TEXT    NOT NULL,
    resolved_at TEXT,
    UNIQUE (consumer, event_id)
);
