-- Refunds, one row each, so that revenue is net of them. A table of its own for the same
-- reason as payments: a refund travels on the `payments` topic and may be heard of
-- before its order.
CREATE TABLE analytics.analytics_refunds (
    refund_id TEXT   COLLATE "C" PRIMARY KEY,
    order_id  TEXT   COLLATE "C" NOT NULL,
    amount    BIGINT NOT NULL
);

CREATE INDEX analytics_refunds_by_order ON analytics.analytics_refunds (order_id);
