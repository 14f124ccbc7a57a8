-- The operator's asset list (replaced as a whole by `muster assets import`)
-- and the campaigns started with `muster campaign start`. Dates are Unix
-- seconds at UTC midnight.
CREATE TABLE assets (
    hostname      TEXT    NOT NULL PRIMARY KEY,
    ip            TEXT    NOT NULL DEFAULT '',
    owner         TEXT    NOT NULL DEFAULT '',
    business_unit TEXT    NOT NULL DEFAULT '',
    line          INTEGER NOT NULL,
    imported_at   INTEGER NOT NULL
);

CREATE TABLE campaigns (
    name        TEXT    NOT NULL PRIMARY KEY,
    policy      TEXT    NOT NULL,
    issued      INTEGER NOT NULL,
    identify_by INTEGER NOT NULL,
    remove_by   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_product ON events (product_id);
