-- SIEM export. The events table is the outbox: every event is written in
-- the same transaction as the change it records, and each exporter reads it
-- in order from its own cursor. `recorded_at` is when the collector wrote
-- the event (an imported snapshot's events carry the snapshot's time in
-- `at`); the exporters' retention window is measured on it. `xact` orders
-- events by writing transaction on PostgreSQL (always 0 here: SQLite has one
-- writer, so `seq` order is commit order).
ALTER TABLE events ADD COLUMN recorded_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN xact INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
UPDATE events SET recorded_at = at;
CREATE INDEX events_recorded ON events (recorded_at);

-- One row per configured exporter: its cursor (the last event it
-- delivered), which collector holds it (a lease, so that collectors sharing
-- a database send each event once), and what it did last.
CREATE TABLE exporters (
    name          TEXT    NOT NULL PRIMARY KEY,
    cursor_xact   INTEGER NOT NULL DEFAULT 0,
    cursor_seq    INTEGER NOT NULL DEFAULT 0,
    owner         TEXT    NOT NULL DEFAULT '',
    lease_until   INTEGER NOT NULL DEFAULT 0,
    sent          INTEGER NOT NULL DEFAULT 0,
    dropped       INTEGER NOT NULL DEFAULT 0,
    last_sent_at  INTEGER,
    last_error    TEXT    NOT NULL DEFAULT '',
    last_error_at INTEGER,
    created_at    INTEGER NOT NULL
);

-- A host's `stale` event is written once, when it first misses its
-- check-ins (`stale_since`); its next check-in clears it. A revoked host
-- keeps its state and is refused from then on.
ALTER TABLE hosts ADD COLUMN stale_since INTEGER;
ALTER TABLE hosts ADD COLUMN revoked_at INTEGER;

-- Hosts that missed a campaign's deadline, each reported once.
CREATE TABLE campaign_missed (
    campaign TEXT    NOT NULL REFERENCES campaigns (name) ON DELETE CASCADE,
    host_id  TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    at       INTEGER NOT NULL,
    PRIMARY KEY (campaign, host_id)
);
