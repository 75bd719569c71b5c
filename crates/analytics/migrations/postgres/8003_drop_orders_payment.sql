-- Nothing to do on PostgreSQL: `analytics_orders.payment`, which SQLite drops here, was
-- never created on this engine (its schema started with `analytics_payments`).
SELECT 1;
