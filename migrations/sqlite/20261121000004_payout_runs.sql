-- Scheduled payout runs (issue 5): payees opt into automatic payouts per payout method, and
-- every run is recorded once per period with its report.

ALTER TABLE payout_methods ADD COLUMN auto_payout INTEGER NOT NULL DEFAULT 0;

-- One row per period that ran (dry runs write nothing). The unique period makes a second run
-- for the same period a no-op that returns the first one's report; the payouts it created
-- carry idempotency keys derived from the period as a second guard.
CREATE TABLE payout_runs (
    id          TEXT PRIMARY KEY,
    period      TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    payouts     INTEGER NOT NULL,
    report      TEXT NOT NULL
);
