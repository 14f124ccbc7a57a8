-- The check-in log keyed by time (issue 8). Its rows were kept in rowid
-- order with a (host_id, sequence) primary key that nothing reads: each
-- check-in wrote a page of that index at a place chosen by its host, so a
-- batch of N check-ins wrote about N pages of it. Keyed by when it was
-- received, the log grows at its end only and the age index of 0012 is the
-- table itself. Duplicate check-ins never reach the log: the store answers
-- them from the host's last sequence.
--
-- Hosts are never deleted; if that comes, the cascade below scans the log
-- (delete the host's entries by age first, or index host_id then).
CREATE TABLE checkins_by_time (
    received_at   INTEGER NOT NULL,
    host_id       TEXT    NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    sequence      INTEGER NOT NULL,
    scanned_at    INTEGER NOT NULL,
    sections_sent INTEGER NOT NULL,
    PRIMARY KEY (received_at, host_id, sequence)
) WITHOUT ROWID;
INSERT INTO checkins_by_time (received_at, host_id, sequence, scanned_at, sections_sent)
    SELECT received_at, host_id, sequence, scanned_at, sections_sent FROM checkins;
DROP TABLE checkins;
ALTER TABLE checkins_by_time RENAME TO checkins;

-- An unchanged check-in is answered from its host's section digests. Read
-- through the primary key, each digest cost a lookup in the table, whose
-- rows hold whole sections; this index holds all the read needs.
CREATE INDEX sections_digests ON sections (host_id, name, digest);
