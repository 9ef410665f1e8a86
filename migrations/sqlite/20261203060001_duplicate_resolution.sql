-- resolve-duplicate (issue 18): a second payment that landed for one payout is booked by an
-- operator as money the payee owes (a posted 'payout_duplicate' debiting the payee's
-- cashable book, so the balance goes negative and later earnings repay it) or as the
-- company's loss (the same transaction against a 'payout_loss' book). One per duplicate
-- object: its id is derived from the payout and the object, so the hold's one-per-kind index
-- leaves this kind out. A dispute resolved in part books a posted 'payout_partial_return'
-- crediting the part back to the payee (one per payout). SQLite cannot alter a CHECK, so the table is rebuilt as in
-- 20261121000002_rails.sql; foreign keys are checked at commit, when the new table carries
-- the name. Twin of the PostgreSQL file.
PRAGMA defer_foreign_keys = ON;

-- A trigger that reads the table must not see it missing: dropped here, made again below
-- exactly as 20261202000001_first_method_hold.sql made it.
DROP TRIGGER payout_method_first_with_money;

CREATE TABLE ledger_transactions_new (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('accrual', 'clawback', 'payout', 'payout_return',
                                              'payout_correction', 'payout_duplicate',
                                              'payout_partial_return')),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    source_id   TEXT,
    referral_id TEXT,
    payout_id   TEXT,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    stream      TEXT,
    subject     TEXT,
    note        TEXT
);
INSERT INTO ledger_transactions_new
    SELECT id, kind, status, source_id, referral_id, payout_id, created_at, resolved_at,
           stream, subject, note
    FROM ledger_transactions;
DROP TABLE ledger_transactions;
ALTER TABLE ledger_transactions_new RENAME TO ledger_transactions;

CREATE UNIQUE INDEX ledger_source ON ledger_transactions (kind, source_id, referral_id)
    WHERE source_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_payout ON ledger_transactions (kind, payout_id)
    WHERE payout_id IS NOT NULL AND kind <> 'payout_duplicate';
CREATE INDEX ledger_stream ON ledger_transactions (subject, stream) WHERE subject IS NOT NULL;
CREATE TRIGGER ledger_status_only_from_pending BEFORE UPDATE OF status ON ledger_transactions
WHEN OLD.status <> 'pending' AND NEW.status <> OLD.status
BEGIN SELECT RAISE(ABORT, 'a resolved ledger transaction cannot change status'); END;

CREATE TRIGGER payout_method_first_with_money AFTER INSERT ON payout_methods
WHEN NEW.changed_at IS NULL
 AND COALESCE((SELECT SUM(p.units)
                 FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id
                WHERE p.holder = NEW.account_id AND p.book = 'referrer_cashable'
                  AND t.status <> 'voided'), 0) <> 0
BEGIN
    UPDATE payout_methods SET changed_at = NEW.updated_at
     WHERE account_id = NEW.account_id AND rail = NEW.rail;
END;

-- How each duplicate object was settled, and by which operator action.
ALTER TABLE payout_duplicates ADD COLUMN booking TEXT;
ALTER TABLE payout_duplicates ADD COLUMN resolved_by_action TEXT;

-- A duplicate is one exception per payout listing every provider record behind it (a JSON
-- array of the provider's ids).
ALTER TABLE recon_exceptions ADD COLUMN records TEXT;
