-- How each order's charge went. A table of its own: a payment event travels on the
-- `payments` topic and its order's `order.created` on `orders`, so analytics can hear of
-- the payment first, and must not lose it for want of the order's row.
CREATE TABLE analytics.analytics_payments (
    order_id TEXT   COLLATE "C" PRIMARY KEY,
    outcome  TEXT   NOT NULL CHECK (outcome IN ('succeeded', 'failed'))
);
