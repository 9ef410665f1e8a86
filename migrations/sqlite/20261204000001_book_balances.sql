-- Maintained balances: each payee's book totals per program and currency, changed in the same
-- transaction as the postings (or the hold status) that move them. Each total is two halves
-- split at 2^32 (total = hi * 2^32 + lo), so it never overflows and every update is one
-- additive statement. Filled here from the postings; `ledger-check` compares them from then on.
CREATE TABLE book_balances (
    holder       TEXT NOT NULL,
    program      TEXT NOT NULL,
    currency     TEXT NOT NULL,
    cashable_hi  BIGINT NOT NULL DEFAULT 0,
    cashable_lo  BIGINT NOT NULL DEFAULT 0,
    credit_hi    BIGINT NOT NULL DEFAULT 0,
    credit_lo    BIGINT NOT NULL DEFAULT 0,
    withdrawn_hi BIGINT NOT NULL DEFAULT 0,
    withdrawn_lo BIGINT NOT NULL DEFAULT 0,
    pending_hi   BIGINT NOT NULL DEFAULT 0,
    pending_lo   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (holder, program, currency)
);

INSERT INTO book_balances
SELECT holder, program, currency,
       c_hi + c_lo / 4294967296, c_lo % 4294967296,
       r_hi + r_lo / 4294967296, r_lo % 4294967296,
       w_hi + w_lo / 4294967296, w_lo % 4294967296,
       p_hi + p_lo / 4294967296, p_lo % 4294967296
FROM (
    SELECT p.holder, p.program, p.currency,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('accrual', 'clawback') THEN p.units END AS BIGINT) / 4294967296), 0) AS BIGINT) AS c_hi,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('accrual', 'clawback') THEN p.units END AS BIGINT) % 4294967296), 0) AS BIGINT) AS c_lo,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_credit' THEN p.units END AS BIGINT) / 4294967296), 0) AS BIGINT) AS r_hi,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_credit' THEN p.units END AS BIGINT) % 4294967296), 0) AS BIGINT) AS r_lo,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('payout', 'payout_return', 'payout_correction', 'payout_duplicate', 'payout_partial_return') AND t.status = 'posted' THEN -p.units END AS BIGINT) / 4294967296), 0) AS BIGINT) AS w_hi,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('payout', 'payout_return', 'payout_correction', 'payout_duplicate', 'payout_partial_return') AND t.status = 'posted' THEN -p.units END AS BIGINT) % 4294967296), 0) AS BIGINT) AS w_lo,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind = 'payout' AND t.status = 'pending' THEN -p.units END AS BIGINT) / 4294967296), 0) AS BIGINT) AS p_hi,
        CAST(COALESCE(SUM(CAST(CASE WHEN p.book = 'referrer_cashable' AND t.kind = 'payout' AND t.status = 'pending' THEN -p.units END AS BIGINT) % 4294967296), 0) AS BIGINT) AS p_lo
    FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id
    WHERE p.holder IS NOT NULL AND t.status <> 'voided'
    GROUP BY p.holder, p.program, p.currency
) sums;
