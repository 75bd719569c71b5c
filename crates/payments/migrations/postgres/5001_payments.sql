-- The payments ledger: one payment per order, from intent to charge (or decline) to refund.
CREATE SCHEMA payments;

CREATE TABLE payments.payments (
    id                 TEXT   PRIMARY KEY,
    order_id           TEXT   NOT NULL UNIQUE,
    user_id            TEXT   NOT NULL,
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    currency           TEXT   NOT NULL,
    -- The provider's token for the customer's card (never the card itself).
    payment_token      TEXT,
    status             TEXT   NOT NULL
        CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded', 'cancelled')),
    provider_reference TEXT,
    failure_reason     TEXT,
    refund_reference   TEXT,
    created_at         TEXT   COLLATE "C" NOT NULL,
    updated_at         TEXT   NOT NULL
);

CREATE INDEX payments_by_user ON payments.payments (user_id);

-- The simulated payment provider's own books. A real provider keeps these on its side;
-- the simulation keeps them here so that its idempotency survives a restart, as a real
-- provider's does: a charge repeated with the same key returns the first answer.
CREATE TABLE payments.simulated_provider_operations (
    idempotency_key TEXT   PRIMARY KEY,
    kind            TEXT   NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount          BIGINT NOT NULL,
    currency        TEXT   NOT NULL,
    approved        BIGINT NOT NULL,
    reference       TEXT   NOT NULL,
    decline_code    TEXT,
    created_at      TEXT   NOT NULL
);

-- Attempts per key, for the test token that fails its first attempt.
CREATE TABLE payments.simulated_provider_attempts (
    idempotency_key TEXT   PRIMARY KEY,
    attempts        BIGINT NOT NULL
);
