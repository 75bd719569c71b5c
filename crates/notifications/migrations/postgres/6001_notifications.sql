-- Every e-mail sent: one per event and recipient. The message id is derived from both,
-- so a resend after a crash carries the same id.
CREATE SCHEMA notifications;

CREATE TABLE notifications.notifications (
    message_id TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL,
    order_id   TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    template   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    sent_at    TEXT COLLATE "C" NOT NULL,
    UNIQUE (event_id, recipient)
);

CREATE INDEX notifications_by_order ON notifications.notifications (order_id);
