-- The console's sign-in sessions. Signing in with an operator token makes
-- a session; the browser holds its secret in an HttpOnly cookie and only
-- the SHA-256 of that secret is kept here. A session speaks for its token:
-- revoking the token (or its expiry) ends the session at the next request.
-- Sessions live in the database, not in one collector's memory, so they
-- survive a restart and work through any collector behind a balancer.
CREATE TABLE console_sessions (
    session_hash TEXT    PRIMARY KEY,
    token_id     INTEGER NOT NULL REFERENCES operator_tokens (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
