-- One reservation per order: the stock the catalog set aside for it, and whether that
-- stock has been given back. The products' `stock` column is what is left to sell.
CREATE TABLE catalog.stock_reservations (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('reserved', 'rejected', 'released')),
    -- JSON: [{"productId": "…", "quantity": 2}, …]
    items      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
