-- The log in commit order, without serialising appends.
--
-- A sequence hands out positions when rows are inserted, not when they commit, so a
-- reader following the log by position could pass a position whose transaction had not
-- committed yet and never see it. Appends used to take one advisory lock until they
-- committed, which made positions appear in order but let one append commit at a time
-- across every process: a few hundred a second, each waiting for the one before it to
-- reach the disk.
--
-- Now each event records the transaction that wrote it (`tx`, PostgreSQL's 64-bit
-- transaction id, which never wraps), and the log is read in `(tx, position)` order, up
-- to the oldest transaction of this database still running: every transaction below it
-- has ended, so nothing can appear before a position already read (`SqlEventStore`'s
-- `read_all` says how). Appends run concurrently and share the server's commits.
-- Events written before this migration keep their order: they all get `tx = 0`, and sort
-- by position among themselves.
ALTER TABLE eventlog.events ADD COLUMN tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE eventlog.events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
CREATE INDEX events_in_commit_order ON eventlog.events (tx, position);
