-- The analytics read model: one row per order and per order line, kept current by the
-- analytics-service consumer and aggregated at query time.
CREATE SCHEMA analytics;

CREATE TABLE analytics.analytics_orders (
    order_id   TEXT   COLLATE "C" PRIMARY KEY,
    -- The UTC day the order was placed, YYYY-MM-DD: what ranges and days group by.
    day        TEXT   COLLATE "C" NOT NULL,
    status     TEXT   COLLATE "C" NOT NULL,
    currency   TEXT   COLLATE "C" NOT NULL,
    total      BIGINT NOT NULL,
    created_at TEXT   NOT NULL
);

CREATE INDEX analytics_orders_by_day ON analytics.analytics_orders (day, status);

CREATE TABLE analytics.analytics_order_lines (
    order_id   TEXT   NOT NULL,
    product_id TEXT   COLLATE "C" NOT NULL,
    sku        TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    quantity   BIGINT NOT NULL,
    line_total BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
