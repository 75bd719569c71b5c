-- Password resets by e-mail: one row per code sent. Only the code's SHA-256 is kept; a
-- code works once (used_at), until expires_at, and a reset retires every other code of
-- the account.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

CREATE INDEX password_resets_user ON password_resets (user_id);
