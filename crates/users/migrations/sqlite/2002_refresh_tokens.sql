-- Refresh tokens: one row per token ever issued, in families. A sign-in starts a family;
-- each refresh retires its token (rotated_at) and issues the family's next one. A retired
-- token presented again means a copy is in someone else's hands: the whole family is
-- revoked. Only the token's SHA-256 is kept, so a copy of this table signs no one in.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
