-- Which relay publishes the log to Kafka, and until when (Unix milliseconds): the one
-- holding an unexpired lease. It renews the lease every round and moves the relay's
-- checkpoint only while it holds it; a relay that dies lets it lapse, and another takes
-- over from the checkpoint. No transaction stays open while the broker acknowledges.
CREATE TABLE relay_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
