-- An account's first payout method starts the same cooling-off as a change when the account
-- already holds money: whoever sets it (a leaked feed key, say) could otherwise direct that
-- money at once. The twin of migrations/postgres/20261202000001.
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
