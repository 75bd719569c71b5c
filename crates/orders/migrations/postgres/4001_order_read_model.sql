-- The query side of orders (CQRS), as in the spec: built only by the order projection
-- from the event store, and rebuilt from it by `oxcart projections rebuild`.
CREATE SCHEMA orders;

CREATE TABLE orders.order_read_model (
    order_id         TEXT   COLLATE "C" PRIMARY KEY,
    user_id          TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    currency         TEXT   NOT NULL,
    total_amount     BIGINT NOT NULL,
    shipping_address TEXT   NOT NULL,
    status_reason    TEXT,
    -- The stream version this row reflects; `?min_version=` waits for it.
    version          BIGINT NOT NULL,
    created_at       TEXT   COLLATE "C" NOT NULL,
    updated_at       TEXT   NOT NULL
);

CREATE INDEX order_read_model_by_user ON orders.order_read_model (user_id, created_at, order_id);
CREATE INDEX order_read_model_by_time ON orders.order_read_model (created_at, order_id);

CREATE TABLE orders.order_item_read_model (
    order_id   TEXT   COLLATE "C" NOT NULL REFERENCES orders.order_read_model (order_id),
    line_no    BIGINT NOT NULL,
    product_id TEXT   NOT NULL,
    sku        TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    unit_price BIGINT NOT NULL,
    quantity   BIGINT NOT NULL,
    line_total BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
