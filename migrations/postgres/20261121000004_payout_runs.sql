-- PostgreSQL twin of migrations/sqlite/20261121000004_payout_runs.sql; keep the two in step.
--
-- Scheduled payout runs (issue 5): payees opt into automatic payouts per payout method, and
-- every run is recorded once per period with its report.

ALTER TABLE payout_methods ADD COLUMN auto_payout BIGINT NOT NULL DEFAULT 0;

-- One row per period that ran (dry runs write nothing). The unique period makes a second run
-- for the same period a no-op that returns the first one's report; the payouts it created
-- carry idempotency keys derived from the period as a second guard.
CREATE TABLE payout_runs (
    id          TEXT PRIMARY KEY,
    period      TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    payouts     BIGINT NOT NULL,
    report      TEXT NOT NULL
);
