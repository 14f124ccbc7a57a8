-- The log of acknowledged check-ins is kept for `checkin_history` (90 days
-- by default) and pruned by age; this index finds the oldest rows. It grows
-- at its end only, one page per batch of check-ins.
CREATE INDEX checkins_received ON checkins (received_at);
