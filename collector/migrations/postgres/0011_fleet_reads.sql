-- PostgreSQL form of sqlite/0011_fleet_reads.sql.
CREATE INDEX hosts_counts ON hosts (last_checkin, imported, superseded_by);
CREATE INDEX hosts_superseded ON hosts (id, superseded_at) WHERE superseded_by IS NOT NULL;
CREATE INDEX detections_present ON detections (product_id, state, host_id) WHERE removed_at IS NULL;
