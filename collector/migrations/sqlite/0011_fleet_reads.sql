-- Indexes for the fleet-wide reads of the summary, the console's overview
-- and the hosts table (issue 9: 100 000 hosts under 300 ms). Without them
-- each such read went through every host row; the summary took seconds.
--
-- The fleet's counts (reporting, stale, never reported, imported) are read
-- from this index alone, a few MB, instead of every hosts row. It also
-- orders hosts by their last report.
CREATE INDEX hosts_counts ON hosts (last_checkin, imported, superseded_by);
-- The few superseded hosts: "not superseded" is checked against this short
-- list instead of looking up the host of every detection.
CREATE INDEX hosts_superseded ON hosts (id, superseded_at) WHERE superseded_by IS NOT NULL;
-- Present detections by product and state: hosts per product, hosts with a
-- banned product and a listing filtered by product read only these.
CREATE INDEX detections_present ON detections (product_id, state, host_id) WHERE removed_at IS NULL;
