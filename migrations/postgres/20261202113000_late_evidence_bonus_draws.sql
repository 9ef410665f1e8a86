-- Late evidence and final bonus draws.

-- Every email (normalized) and payment fingerprint an account has ever had. A connection once
-- seen stays evidence after the account changes them, so a referral's verdict does not depend
-- on the order account versions arrived in.
CREATE TABLE account_identities (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('email', 'payment_fingerprint')),
    value      TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, value)
);
INSERT INTO account_identities (account_id, kind, value)
    SELECT id, 'email', email_normalized FROM accounts;
INSERT INTO account_identities (account_id, kind, value)
    SELECT id, 'payment_fingerprint', TRIM(payment_fingerprint) FROM accounts
    WHERE payment_fingerprint IS NOT NULL AND TRIM(payment_fingerprint) <> '';

-- Accounts whose evidence changed in the current write transaction: their referrals are
-- judged again. Filled and emptied inside the same transaction.
CREATE TABLE evidence_scope (
    account_id TEXT PRIMARY KEY
);

-- When evidence disqualified a referral that had already qualified (NULL otherwise): the
-- balance says so, and a program that stops future earnings only cuts its spend there.
ALTER TABLE referrals ADD COLUMN disqualified_late_at BIGINT;

-- Bonus draws, made once and final. seed_fingerprint identifies the seed (HMAC of a fixed
-- label under it), never the seed itself.
CREATE TABLE bonus_draws (
    program          TEXT NOT NULL,
    referred_id      TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('referrer', 'referred')),
    amount           TEXT NOT NULL,
    slot             TEXT NOT NULL,
    slots            TEXT NOT NULL,
    digest           TEXT NOT NULL,
    seed_fingerprint TEXT NOT NULL,
    drawn_at         BIGINT NOT NULL,
    PRIMARY KEY (program, referred_id, role)
);
CREATE INDEX bonus_draws_referred ON bonus_draws (referred_id);

-- The seed fingerprint each bonus program's new draws must be made under; a different seed
-- is refused until a rotation is requested.
CREATE TABLE bonus_seeds (
    program     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    accepted_at BIGINT NOT NULL
);
