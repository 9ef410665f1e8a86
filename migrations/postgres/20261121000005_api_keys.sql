-- PostgreSQL twin of migrations/sqlite/20261121000005_api_keys.sql; keep the two in step.
-- API keys for the HTTP API, stored as SHA-256 of the key (the key itself is shown once).
-- A referrer key names the one account it acts for.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('ingest', 'referrer', 'operator', 'finance')),
    account_id TEXT,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    CHECK ((scope = 'referrer') = (account_id IS NOT NULL))
);
