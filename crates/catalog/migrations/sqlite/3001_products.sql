CREATE TABLE products (
    id          TEXT    PRIMARY KEY,
    -- Stored upper-cased: SKUs are matched case-insensitively.
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    -- Lower-cased name, for case-insensitive search and a stable alphabetical order.
    search_name TEXT    NOT NULL,
    description TEXT    NOT NULL,
    -- Minor units of `currency` (cents for USD, yen for JPY).
    price       INTEGER NOT NULL CHECK (price >= 0),
    currency    TEXT    NOT NULL CHECK (length(currency) = 3),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE INDEX products_by_name ON products (search_name, id);
