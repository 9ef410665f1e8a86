-- Rails (issue 3): payouts that stay in flight at the provider, money that comes back after
-- delivery, resumable multi-step submits, and webhook deliveries.

-- A payout that was delivered and then came back (returned, reversed, bounced) is reversed by a
-- posted 'payout_return' transaction that mirrors its hold. When a provider later contradicts a
-- failure or return we booked (it says paid), a posted 'payout_correction' takes the money out
-- of the balance again until an operator decides. SQLite cannot alter a CHECK, so the
-- table is rebuilt; foreign keys are checked at commit, when the new table carries the name.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE ledger_transactions_new (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('accrual', 'clawback', 'payout', 'payout_return', 'payout_correction')),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    source_id   TEXT,
    referral_id TEXT,
    payout_id   TEXT,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
INSERT INTO ledger_transactions_new
    SELECT id, kind, status, source_id, referral_id, payout_id, created_at, resolved_at
    FROM ledger_transactions;
DROP TABLE ledger_transactions;
ALTER TABLE ledger_transactions_new RENAME TO ledger_transactions;

CREATE UNIQUE INDEX ledger_source ON ledger_transactions (kind, source_id, referral_id)
    WHERE source_id IS NOT NULL;
-- One hold, at most one return and at most one correction per payout.
CREATE UNIQUE INDEX ledger_payout ON ledger_transactions (kind, payout_id)
    WHERE payout_id IS NOT NULL;
CREATE TRIGGER ledger_status_only_from_pending BEFORE UPDATE OF status ON ledger_transactions
WHEN OLD.status <> 'pending' AND NEW.status <> OLD.status
BEGIN SELECT RAISE(ABORT, 'a resolved ledger transaction cannot change status'); END;

-- The provider's own word for the payout's state, and when that state began (for ordering
-- webhook and poll readings that arrive out of order).
ALTER TABLE payouts ADD COLUMN provider_status TEXT;
ALTER TABLE payouts ADD COLUMN provider_status_at INTEGER;
-- Polls of a processing payout so far, for back-off.
ALTER TABLE payouts ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
-- A paid payout is still polled until then (ms), slowly, so money that comes back after
-- delivery (returned, reversed, bounced) is seen even when its webhook is lost.
ALTER TABLE payouts ADD COLUMN watch_until INTEGER;

-- Progress inside one attempt (Wise: quote, then transfer), saved after each provider call
-- that created something, so a crash resumes instead of creating it twice.
ALTER TABLE payout_attempts ADD COLUMN checkpoint TEXT;

-- Where a transition came from: submit, lookup, poll, webhook, worker.
ALTER TABLE payout_events ADD COLUMN source TEXT;

-- Every authenticated webhook delivery, once. The key makes re-deliveries harmless.
CREATE TABLE webhook_deliveries (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payout_id   TEXT,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
