-- Foundation schema: enrollment tokens, hosts, their inventory sections,
-- detections and the log of acknowledged check-ins. Times are Unix seconds.
CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    uses_left   INTEGER NOT NULL,
    uses_total  INTEGER NOT NULL
);

CREATE TABLE hosts (
    id               TEXT    PRIMARY KEY,
    hostname         TEXT    NOT NULL,
    os_name          TEXT    NOT NULL DEFAULT '',
    os_version       TEXT    NOT NULL DEFAULT '',
    kernel           TEXT    NOT NULL DEFAULT '',
    arch             TEXT    NOT NULL DEFAULT '',
    ips              TEXT    NOT NULL DEFAULT '[]',
    agent_version    TEXT    NOT NULL DEFAULT '',
    enrolled_at      INTEGER NOT NULL,
    last_checkin     INTEGER,
    last_sequence    INTEGER NOT NULL DEFAULT 0,
    cert_serial      TEXT    NOT NULL,
    catalog_version  TEXT    NOT NULL DEFAULT '',
    agent_detections TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX hosts_hostname ON hosts (hostname);

CREATE TABLE sections (
    host_id    TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    items      TEXT    NOT NULL,
    item_count INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (host_id, name)
);

CREATE TABLE detections (
    host_id    TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    product_id TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    version    TEXT    NOT NULL DEFAULT '',
    detection  TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (host_id, product_id)
);
CREATE INDEX detections_product ON detections (product_id);

CREATE TABLE checkins (
    host_id       TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    sequence      INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    scanned_at    INTEGER NOT NULL,
    sections_sent INTEGER NOT NULL,
    PRIMARY KEY (host_id, sequence)
);
