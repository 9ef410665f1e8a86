-- An account's first payout method starts the same cooling-off as a change when the account
-- already holds money: whoever sets it (a leaked feed key, say) could otherwise direct that
-- money at once. The twin of migrations/sqlite/20261202000001.
CREATE FUNCTION payout_method_first_with_money() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.changed_at IS NULL
       AND COALESCE((SELECT SUM(p.units)
                       FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id
                      WHERE p.holder = NEW.account_id AND p.book = 'referrer_cashable'
                        AND t.status <> 'voided'), 0) <> 0 THEN
        NEW.changed_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END;
$$;
-- Runs after payout_method_changed (triggers fire in name order), so a change keeps its own
-- reason and a first method with money behind it gets one.
CREATE TRIGGER payout_method_first_with_money BEFORE INSERT ON payout_methods
    FOR EACH ROW EXECUTE FUNCTION payout_method_first_with_money();
