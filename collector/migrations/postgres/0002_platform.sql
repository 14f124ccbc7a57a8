-- PostgreSQL form of sqlite/0002_platform.sql (BIGINT for SQLite's 64-bit INTEGER).
-- The host's platform (linux, windows, macos): the engine matches only the
-- indicators of the host's own platform.
ALTER TABLE hosts ADD COLUMN platform TEXT NOT NULL DEFAULT '';
