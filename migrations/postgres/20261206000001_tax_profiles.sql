-- Payees' tax forms as the platform reports them (issue 22): which form is on file, the
-- country, and at most the last four digits of the tax id (a full one is refused at ingest).
CREATE TABLE tax_profiles (
    account_id   TEXT PRIMARY KEY,
    status       TEXT NOT NULL CHECK (status IN ('none', 'w9', 'w8ben', 'w8bene')),
    country      TEXT NOT NULL CHECK (length(country) = 2),
    tin_last4    TEXT CHECK (tin_last4 IS NULL OR length(tin_last4) = 4),
    received_at  BIGINT NOT NULL,
    content_hash TEXT NOT NULL
);
