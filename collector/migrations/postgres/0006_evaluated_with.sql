-- PostgreSQL form of sqlite/0006_evaluated_with.sql.
-- The catalog (its digest) each host's detections were last evaluated
-- with: when the collector's catalog changes, hosts evaluated with another
-- are re-evaluated from their stored inventory, without a new check-in.
ALTER TABLE hosts ADD COLUMN evaluated_with TEXT NOT NULL DEFAULT '';
CREATE INDEX hosts_evaluated_with ON hosts (evaluated_with);
