-- PostgreSQL form of sqlite/0008_superseded.sql.
ALTER TABLE hosts ADD COLUMN hardware_id TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN superseded_by TEXT;
ALTER TABLE hosts ADD COLUMN superseded_at BIGINT;
CREATE INDEX hosts_hostname_lower ON hosts (lower(hostname));
ALTER TABLE events ADD COLUMN related_host TEXT NOT NULL DEFAULT '';

-- The fingerprint of the CA that signed each host's current certificate
-- (empty: enrolled before it was recorded), so that a CA rotation knows
-- which hosts still need a certificate from the new CA.
ALTER TABLE hosts ADD COLUMN cert_ca TEXT NOT NULL DEFAULT '';
