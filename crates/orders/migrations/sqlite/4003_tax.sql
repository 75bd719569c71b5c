-- For the invoice: each line's tax class (`order.created` v2) and the customer's tax
-- id. Lines projected before tax classes were all `standard`.
ALTER TABLE order_item_read_model ADD COLUMN tax_class TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE order_read_model ADD COLUMN customer_tax_id TEXT;
