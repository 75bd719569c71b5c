-- Gap-free numbering: one counter per series (`INV-2026`, `CN-2026`), moved in the same
-- transaction that stores the document, so a number is used exactly when a document is.
CREATE TABLE invoice_sequences (
    series TEXT    PRIMARY KEY,
    last   INTEGER NOT NULL
);

-- Invoices and credit notes, kept as issued: the figures as JSON and the PDF as rendered
-- then, so a document never changes after the fact.
CREATE TABLE invoices (
    number    TEXT    PRIMARY KEY,
    kind      TEXT    NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    order_id  TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    currency  TEXT    NOT NULL,
    total     INTEGER NOT NULL,
    issued_at TEXT    NOT NULL,
    document  TEXT    NOT NULL,
    pdf       BLOB    NOT NULL,
    UNIQUE (order_id, kind)
);
