-- Attempts that do not use up PAYOUTS_MAX_ATTEMPTS get outcomes of their own: `throttled`
-- (rate limited before execution) and `interrupted` (the worker stopped mid-send and a lookup
-- proved nothing landed). SQLite cannot alter a CHECK, so the table is rebuilt with its
-- columns and index as they stand. The twin of migrations/postgres/20261202110001.
CREATE TABLE payout_attempts_new (
    payout_id    TEXT NOT NULL REFERENCES payouts (id),
    attempt_no   INTEGER NOT NULL,
    provider_key TEXT NOT NULL,
    outcome      TEXT NOT NULL DEFAULT 'in_flight'
                 CHECK (outcome IN ('in_flight', 'landed', 'retry', 'throttled', 'unknown',
                                    'interrupted', 'permanent')),
    provider_ref TEXT,
    detail       TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    checkpoint   TEXT,
    rail_ref     TEXT,
    PRIMARY KEY (payout_id, attempt_no)
);
INSERT INTO payout_attempts_new (payout_id, attempt_no, provider_key, outcome, provider_ref,
    detail, started_at, finished_at, checkpoint, rail_ref)
SELECT payout_id, attempt_no, provider_key, outcome, provider_ref, detail, started_at,
    finished_at, checkpoint, rail_ref
FROM payout_attempts;
DROP TABLE payout_attempts;
ALTER TABLE payout_attempts_new RENAME TO payout_attempts;
CREATE INDEX payout_attempts_rail_ref ON payout_attempts (rail_ref);
