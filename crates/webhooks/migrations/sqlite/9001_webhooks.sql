-- Outbound webhooks: the endpoints admins register, and each delivery of an event to one.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- A JSON array of event types.
    event_types TEXT NOT NULL,
    -- Signs every delivery; shown to the admin once, when the endpoint is registered.
    secret      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);

-- One row per (endpoint, event): `delivered` once the endpoint answered 2xx, so a
-- redelivered or replayed event is not sent to it again.
CREATE TABLE webhook_deliveries (
    endpoint_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts        INTEGER NOT NULL,
    response_status INTEGER,
    last_error      TEXT,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (endpoint_id, updated_at);
