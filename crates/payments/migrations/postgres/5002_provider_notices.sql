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
