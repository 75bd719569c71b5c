-- The analytics read model: one row per order and per order line, kept current by the
-- analytics-service consumer and aggregated at query time.
CREATE TABLE analytics_orders (
    order_id   TEXT    PRIMARY KEY,
    -- The UTC day the order was placed, YYYY-MM-DD: what ranges and days group by.
    day        TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    total      INTEGER NOT NULL,
    payment    TEXT    NOT NULL DEFAULT 'none' CHECK (payment IN ('none', 'succeeded', 'failed')),
    created_at TEXT    NOT NULL
);

CREATE INDEX analytics_orders_by_day ON analytics_orders (day, status);

CREATE TABLE analytics_order_lines (
    order_id   TEXT    NOT NULL,
    product_id TEXT    NOT NULL,
    sku        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    line_total INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
