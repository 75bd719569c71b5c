-- Refunds, one row each, so that revenue is net of them. A table of its own for the same
-- reason as payments: a refund travels on the `payments` topic and may be heard of
-- before its order.
CREATE TABLE analytics_refunds (
    refund_id TEXT    PRIMARY KEY,
    order_id  TEXT    NOT NULL,
    amount    INTEGER NOT NULL
);

CREATE INDEX analytics_refunds_by_order ON analytics_refunds (order_id);
