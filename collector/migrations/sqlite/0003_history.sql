-- Detection history. A detection that is no longer found keeps its row with
-- `removed_at` set (its last known state stays readable); every change of a
-- detection, and every enrollment, is an event in the host's timeline,
-- written in the same transaction as the change itself.
ALTER TABLE detections ADD COLUMN removed_at INTEGER;

CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    host_id        TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    product_id     TEXT    NOT NULL DEFAULT '',
    state          TEXT    NOT NULL DEFAULT '',
    previous_state TEXT    NOT NULL DEFAULT '',
    version        TEXT    NOT NULL DEFAULT '',
    detection      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_host ON events (host_id, seq);
