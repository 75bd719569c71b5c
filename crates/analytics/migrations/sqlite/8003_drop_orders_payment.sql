-- `analytics_orders.payment` has been neither written nor read since payment outcomes got
-- a table of their own (8002); PostgreSQL never had it. Dropped, so that both engines
-- keep the same columns (`crates/sql/tests/schema.rs` holds them to it).
ALTER TABLE analytics_orders DROP COLUMN payment;
