-- Hosts created by `muster import` from a snapshot of an air-gapped host:
-- they have no agent certificate; one per hostname (without regard to case).
ALTER TABLE hosts ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX hosts_imported_name ON hosts (lower(hostname)) WHERE imported = 1;
