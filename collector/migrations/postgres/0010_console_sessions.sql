-- PostgreSQL form of sqlite/0010_console_sessions.sql.
CREATE TABLE console_sessions (
    session_hash TEXT   PRIMARY KEY,
    token_id     BIGINT NOT NULL REFERENCES operator_tokens (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
