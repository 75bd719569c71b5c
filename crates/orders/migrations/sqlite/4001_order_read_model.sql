-- The query side of orders (CQRS), as in the spec: built only by the order projection
-- from the event store, and rebuilt from it by `oxcart projections rebuild`.
CREATE TABLE order_read_model (
    order_id         TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    total_amount     INTEGER NOT NULL,
    shipping_address TEXT    NOT NULL,
    status_reason    TEXT,
    -- The stream version this row reflects; `?min_version=` waits for it.
    version          INTEGER NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

CREATE INDEX order_read_model_by_user ON order_read_model (user_id, created_at, order_id);
CREATE INDEX order_read_model_by_time ON order_read_model (created_at, order_id);

CREATE TABLE order_item_read_model (
    order_id   TEXT    NOT NULL REFERENCES order_read_model (order_id),
    line_no    INTEGER NOT NULL,
    product_id TEXT    NOT NULL,
    sku        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    unit_price INTEGER NOT NULL,
    quantity   INTEGER NOT NULL,
    line_total INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
