-- Operator tokens for the HTTP API (`Authorization: Bearer`), made by
-- `muster-collector operator-token create`. Only the SHA-256 of a token is
-- kept, as for enrollment tokens. A name belongs to one token at a time
-- among those not revoked, so `operator-token revoke NAME` is never
-- ambiguous. `last_used_at` is written at most once a minute per token.
CREATE TABLE operator_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE UNIQUE INDEX operator_tokens_active_name ON operator_tokens (name) WHERE revoked_at IS NULL;
