-- PostgreSQL form of sqlite/0005_assets_campaigns.sql.
-- The operator's asset list (replaced as a whole by `muster assets import`)
-- and the campaigns started with `muster campaign start`. Dates are Unix
-- seconds at UTC midnight.
CREATE TABLE assets (
    hostname      TEXT    NOT NULL PRIMARY KEY,
    ip            TEXT    NOT NULL DEFAULT '',
    owner         TEXT    NOT NULL DEFAULT '',
    business_unit TEXT    NOT NULL DEFAULT '',
    line          BIGINT  NOT NULL,
    imported_at   BIGINT  NOT NULL
);

CREATE TABLE campaigns (
    name        TEXT    NOT NULL PRIMARY KEY,
    policy      TEXT    NOT NULL,
    issued      BIGINT  NOT NULL,
    identify_by BIGINT  NOT NULL,
    remove_by   BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX events_product ON events (product_id);
