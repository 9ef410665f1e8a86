-- PostgreSQL twin of migrations/sqlite/20261121000002_rails.sql; keep the two in step.
--
-- Rails (issue 3): payouts that stay in flight at the provider, money that comes back after
-- delivery, resumable multi-step submits, and webhook deliveries.

-- A payout that was delivered and then came back (returned, reversed, bounced) is reversed by a
-- posted 'payout_return' transaction that mirrors its hold. When a provider later contradicts a
-- failure or return we booked (it says paid), a posted 'payout_correction' takes the money out
-- of the balance again until an operator decides. SQLite rebuilds the table to widen the CHECK;
-- here the named constraint is replaced in place (foreign keys and the status trigger stay).
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('accrual', 'clawback', 'payout', 'payout_return', 'payout_correction'));

-- One hold, at most one return and at most one correction per payout.
DROP INDEX ledger_payout;
CREATE UNIQUE INDEX ledger_payout ON ledger_transactions (kind, payout_id)
    WHERE payout_id IS NOT NULL;

-- The provider's own word for the payout's state, and when that state began (for ordering
-- webhook and poll readings that arrive out of order).
ALTER TABLE payouts ADD COLUMN provider_status TEXT;
ALTER TABLE payouts ADD COLUMN provider_status_at BIGINT;
-- Polls of a processing payout so far, for back-off.
ALTER TABLE payouts ADD COLUMN polls BIGINT NOT NULL DEFAULT 0;
-- A paid payout is still polled until then (ms), slowly, so money that comes back after
-- delivery (returned, reversed, bounced) is seen even when its webhook is lost.
ALTER TABLE payouts ADD COLUMN watch_until BIGINT;

-- Progress inside one attempt (Wise: quote, then transfer), saved after each provider call
-- that created something, so a crash resumes instead of creating it twice.
ALTER TABLE payout_attempts ADD COLUMN checkpoint TEXT;

-- Where a transition came from: submit, lookup, poll, webhook, worker.
ALTER TABLE payout_events ADD COLUMN source TEXT;

-- Every authenticated webhook delivery, once. The key makes re-deliveries harmless.
CREATE TABLE webhook_deliveries (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    payout_id   TEXT,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
