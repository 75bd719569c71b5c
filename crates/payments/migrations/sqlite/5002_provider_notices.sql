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
    updated_at         TEXT    NOT NULL
);
INSERT INTO payments_new SELECT id, order_id, user_id, amount, currency, payment_token, status,
    provider_reference, failure_reason, refund_reference, created_at, updated_at FROM payments;
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
