-- A payment may wait on its provider: `processing` is a charge the provider accepted and
-- settles later, telling the outcome by webhook. SQLite cannot change a CHECK in place:
-- the table is rebuilt under its name.
CREATE TABLE payments_new (
    id                 TEXT    PRIMARY KEY,
    order_id           TEXT    NOT NULL UNIQUE,
    user_id            TEXT    NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount >= 0),
    currency           TEXT    NOT NULL,
    -- The provider's token for the customer's card (never the card itself).
    payment_token      TEXT,
    status             TEXT    NOT NULL
        CHECK (status IN ('pending', 'processing', 'succeeded', 'failed', 'refunded', 'cancelled')),
    provider_reference TEXT,
    failure_reason     TEXT,
    refund_reference   TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    -- Refunds may be partial, and several: what was given back so far (the status
    -- becomes `refunded` when it is all of it).
    refunded_amount    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO payments_new SELECT id, order_id, user_id, amount, currency, payment_token, status,
    provider_reference, failure_reason, refund_reference, created_at, updated_at,
    CASE WHEN status = 'refunded' THEN amount ELSE 0 END FROM payments;
DROP TABLE payments;
ALTER TABLE payments_new RENAME TO payments;
CREATE INDEX payments_by_user ON payments (user_id);

-- A webhook names the payment by the provider's reference.
CREATE INDEX payments_by_provider_reference ON payments (provider_reference);

-- Every provider notice (webhook event) applied, by the provider's event id: a provider
-- delivers at least once, and a notice seen before changes nothing.
CREATE TABLE provider_notices (
    provider    TEXT NOT NULL,
    notice_id   TEXT NOT NULL,
    notice_type TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, notice_id)
);

-- Each refund on a row of its own.
CREATE TABLE refunds (
    refund_id          TEXT    PRIMARY KEY,
    order_id           TEXT    NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    currency           TEXT    NOT NULL,
    -- `cancellation` (the order was cancelled: the rest of the payment) or `request`.
    source             TEXT    NOT NULL CHECK (source IN ('cancellation', 'request')),
    reason             TEXT    NOT NULL,
    provider_reference TEXT    NOT NULL,
    created_at         TEXT    NOT NULL
);

CREATE INDEX refunds_by_order ON refunds (order_id, created_at);

-- The refunds made before this table, each a cancellation's of the whole payment.
INSERT INTO refunds (refund_id, order_id, amount, currency, source, reason, provider_reference, created_at)
    SELECT order_id, order_id, amount, currency, 'cancellation', 'order cancelled', COALESCE(refund_reference, ''), updated_at
    FROM payments WHERE status = 'refunded' AND amount > 0;
