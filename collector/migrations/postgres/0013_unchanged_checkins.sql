-- The check-in log keyed by time (issue 8). Its (host_id, sequence) primary
-- key was an index nothing reads, written at a place chosen by each host;
-- keyed by when it was received, the key grows at its end only and also
-- finds the oldest entries, so the age index of 0012 goes. Duplicate
-- check-ins never reach the log: the store answers them from the host's
-- last sequence.
ALTER TABLE checkins DROP CONSTRAINT checkins_pkey;
DROP INDEX checkins_received;
ALTER TABLE checkins ADD PRIMARY KEY (received_at, host_id, sequence);
