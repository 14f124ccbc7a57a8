-- PostgreSQL form of sqlite/0007_siem.sql.
-- Sequence values are taken in insertion order but become visible in commit
-- order, so an exporter reading `seq > cursor` could pass over an event
-- whose transaction commits late. Each event records its transaction id
-- (`xact`); exporters read only events of transactions older than every
-- running one (the snapshot's xmin), in (xact, seq) order, which no later
-- commit can precede.
ALTER TABLE events ADD COLUMN recorded_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN xact BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
UPDATE events SET recorded_at = at;
ALTER TABLE events ALTER COLUMN recorded_at SET DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT);
ALTER TABLE events ALTER COLUMN xact SET DEFAULT (pg_current_xact_id()::TEXT::BIGINT);
CREATE INDEX events_recorded ON events (recorded_at);
CREATE INDEX events_xact ON events (xact, seq);

CREATE TABLE exporters (
    name          TEXT    NOT NULL PRIMARY KEY,
    cursor_xact   BIGINT  NOT NULL DEFAULT 0,
    cursor_seq    BIGINT  NOT NULL DEFAULT 0,
    owner         TEXT    NOT NULL DEFAULT '',
    lease_until   BIGINT  NOT NULL DEFAULT 0,
    sent          BIGINT  NOT NULL DEFAULT 0,
    dropped       BIGINT  NOT NULL DEFAULT 0,
    last_sent_at  BIGINT,
    last_error    TEXT    NOT NULL DEFAULT '',
    last_error_at BIGINT,
    created_at    BIGINT  NOT NULL
);

ALTER TABLE hosts ADD COLUMN stale_since BIGINT;
ALTER TABLE hosts ADD COLUMN revoked_at BIGINT;

CREATE TABLE campaign_missed (
    campaign TEXT    NOT NULL REFERENCES campaigns (name) ON DELETE CASCADE,
    host_id  TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    at       BIGINT  NOT NULL,
    PRIMARY KEY (campaign, host_id)
);
