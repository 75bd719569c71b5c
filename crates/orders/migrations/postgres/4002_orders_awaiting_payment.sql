-- Orders still awaiting their payment, oldest first: what the unpaid-order chore looks
-- for every minute, without reading every order ever placed.
CREATE INDEX order_read_model_by_status ON orders.order_read_model (status, created_at);
