-- Payment outcomes get a table of their own. On Kafka a payment event travels on the
-- `payments` topic and its order's `order.created` on `orders`, so analytics can learn
-- how an order was paid before it learns of the order; an update of the order's row
-- would then find nothing and the outcome would be lost. (`analytics_orders.payment` is
-- no longer written or read.)
CREATE TABLE analytics_payments (
    order_id TEXT PRIMARY KEY,
    outcome  TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed'))
);

INSERT INTO analytics_payments (order_id, outcome)
    SELECT order_id, payment FROM analytics_orders WHERE payment <> 'none';
