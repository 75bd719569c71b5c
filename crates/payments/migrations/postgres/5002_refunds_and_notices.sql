-- A payment may wait on its provider: `processing` is a charge the provider accepted and
-- settles later, telling the outcome by webhook.
ALTER TABLE payments.payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments.payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('pending', 'processing', 'succeeded', 'failed', 'refunded', 'cancelled'));

-- A webhook names the payment by the provider's reference.
CREATE INDEX payments_by_provider_reference ON payments.payments (provider_reference);

-- Every provider notice (webhook event) applied, by the provider's event id: a provider
-- delivers at least once, and a notice seen before changes nothing.
CREATE TABLE payments.provider_notices (
    provider    TEXT NOT NULL,
    notice_id   TEXT NOT NULL,
    notice_type TEXT NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (provider, notice_id)
);

-- Refunds may be partial, and several: what was given back so far (the status becomes
-- `refunded` when it is all of it), and each refund on a row of its own.
ALTER TABLE payments.payments ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;

CREATE TABLE payments.refunds (
    refund_id          TEXT   PRIMARY KEY,
    order_id           TEXT   NOT NULL,
    amount             BIGINT NOT NULL CHECK (amount > 0),
    currency           TEXT   NOT NULL,
    -- `cancellation` (the order was cancelled: the rest of the payment) or `request`.
    source             TEXT   NOT NULL CHECK (source IN ('cancellation', 'request')),
    reason             TEXT   NOT NULL,
    provider_reference TEXT   NOT NULL,
    created_at         TEXT   COLLATE "C" NOT NULL
);

CREATE INDEX refunds_by_order ON payments.refunds (order_id, created_at);

-- The refunds made before this table, each a cancellation's of the whole payment.
UPDATE payments.payments SET refunded_amount = amount WHERE status = 'refunded';
INSERT INTO payments.refunds (refund_id, order_id, amount, currency, source, reason, provider_reference, created_at)
    SELECT order_id, order_id, amount, currency, 'cancellation', 'order cancelled', COALESCE(refund_reference, ''), updated_at
    FROM payments.payments WHERE status = 'refunded' AND amount > 0;
