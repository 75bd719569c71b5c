-- A credit note for each refund, not one per order: an order's documents are told apart
-- by `reference` ('' for its invoice, the refund's id for a credit note; the credit
-- notes before this were a cancellation's, whose refund carried the order's id). And the
-- PDF is rendered from `document` when asked for, so new rows store none; the older
-- rows keep the PDF rendered then. SQLite changes a constraint by copying the table.
CREATE TABLE invoices_by_reference (
    number    TEXT    PRIMARY KEY,
    kind      TEXT    NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    order_id  TEXT    NOT NULL,
    reference TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    currency  TEXT    NOT NULL,
    total     INTEGER NOT NULL,
    issued_at TEXT    NOT NULL,
    document  TEXT    NOT NULL,
    pdf       BLOB,
    UNIQUE (order_id, kind, reference)
);

INSERT INTO invoices_by_reference
    (number, kind, order_id, reference, user_id, currency, total, issued_at, document, pdf)
SELECT number, kind, order_id, CASE kind WHEN 'credit_note' THEN order_id ELSE '' END,
       user_id, currency, total, issued_at, document, pdf
FROM invoices;

DROP TABLE invoices;
ALTER TABLE invoices_by_reference RENAME TO invoices;
