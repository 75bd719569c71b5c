-- Nothing to do on SQLite: one writer commits at a time, so the log's positions
-- are already in commit order. (On PostgreSQL this migration records each event's
-- transaction, for readers to follow the log in commit order.)
SELECT 1;
