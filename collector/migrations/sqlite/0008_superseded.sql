-- Re-imaged hosts. An agent enrolled on a machine that already had one
-- (same hostname, and the same hardware id when both report one)
-- supersedes the older host at its first report: the older host keeps its
-- state, is marked `superseded_by` the newer and is refused from then on;
-- the two hosts' timelines name each other (`related_host`).
ALTER TABLE hosts ADD COLUMN hardware_id TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN superseded_by TEXT;
ALTER TABLE hosts ADD COLUMN superseded_at INTEGER;
CREATE INDEX hosts_hostname_lower ON hosts (lower(hostname));
ALTER TABLE events ADD COLUMN related_host TEXT NOT NULL DEFAULT '';

-- The fingerprint of the CA that signed each host's current certificate
-- (empty: enrolled before it was recorded), so that a CA rotation knows
-- which hosts still need a certificate from the new CA.
ALTER TABLE hosts ADD COLUMN cert_ca TEXT NOT NULL DEFAULT '';
