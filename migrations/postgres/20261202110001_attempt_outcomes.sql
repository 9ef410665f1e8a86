-- Attempts that do not use up PAYOUTS_MAX_ATTEMPTS get outcomes of their own: `throttled`
-- (rate limited before execution) and `interrupted` (the worker stopped mid-send and a lookup
-- proved nothing landed). The twin of migrations/sqlite/20261202110001.
ALTER TABLE payout_attempts DROP CONSTRAINT payout_attempts_outcome_check;
ALTER TABLE payout_attempts ADD CONSTRAINT payout_attempts_outcome_check
    CHECK (outcome IN ('in_flight', 'landed', 'retry', 'throttled', 'unknown', 'interrupted',
                       'permanent'));
