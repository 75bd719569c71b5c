CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    -- Stored lower-cased, so the unique constraint is case-insensitive.
    email         TEXT NOT NULL UNIQUE,
    name          TEXT,
    -- Argon2id, in PHC string format (algorithm, parameters and salt included).
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at    TEXT NOT NULL
);
