-- A credit note for each refund, not one per order: an order's documents are told apart
-- by `reference` ('' for its invoice, the refund's id for a credit note; the credit
-- notes before this were a cancellation's, whose refund carried the order's id). And the
-- PDF is rendered from `document` when asked for, so new rows store none; the older
-- rows keep the PDF rendered then.
ALTER TABLE invoices.invoices ADD COLUMN reference TEXT NOT NULL DEFAULT '';
UPDATE invoices.invoices SET reference = order_id WHERE kind = 'credit_note';
ALTER TABLE invoices.invoices ALTER COLUMN reference DROP DEFAULT;
ALTER TABLE invoices.invoices ALTER COLUMN pdf DROP NOT NULL;
ALTER TABLE invoices.invoices DROP CONSTRAINT invoices_order_id_kind_key;
ALTER TABLE invoices.invoices ADD CONSTRAINT invoices_order_id_kind_reference_key
    UNIQUE (order_id, kind, reference);
