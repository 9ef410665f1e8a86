-- resolve-duplicate (issue 18): a second payment that landed for one payout is booked by an
-- operator as money the payee owes (a posted 'payout_duplicate' debiting the payee's
-- cashable book, so the balance goes negative and later earnings repay it) or as the
-- company's loss (the same transaction against a 'payout_loss' book). One per duplicate
-- object: its id is derived from the payout and the object, so the hold's one-per-kind index
-- leaves this kind out. A dispute resolved in part books a posted 'payout_partial_return'
-- crediting the part back to the payee (one per payout). Twin of the SQLite file.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('accrual', 'clawback', 'payout', 'payout_return', 'payout_correction',
                    'payout_duplicate', 'payout_partial_return'));
DROP INDEX ledger_payout;
CREATE UNIQUE INDEX ledger_payout ON ledger_transactions (kind, payout_id)
    WHERE payout_id IS NOT NULL AND kind <> 'payout_duplicate';

-- How each duplicate object was settled, and by which operator action.
ALTER TABLE payout_duplicates ADD COLUMN booking TEXT;
ALTER TABLE payout_duplicates ADD COLUMN resolved_by_action TEXT;

-- A duplicate is one exception per payout listing every provider record behind it (a JSON
-- array of the provider's ids).
ALTER TABLE recon_exceptions ADD COLUMN records TEXT;
