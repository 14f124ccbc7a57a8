-- PostgreSQL form of sqlite/0008_superseded.sql.
ALTER TABLE hosts ADD COLUMN hardware_id TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN superseded_by TEXT;
ALTER TABLE hosts ADD COLUMN superseded_at BIGINT;
CREATE INDEX hosts_hostname_lower ON hosts (lower(hostname));
ALTER TABLE events ADD COLUMN related_host TEXT NOT NULL DEFAULT '';
