-- PostgreSQL twin of migrations/sqlite/20261121000003_programs.sql; keep the two in step.
--
-- Programs as configuration (issue 4): template runs, creator templates, affiliate opt-ins,
-- and commissions posted per earning stream by true-up instead of per usage row.

-- A pod charge may name the template it ran from and the runtime it covers.
ALTER TABLE usage ADD COLUMN template_id TEXT;
ALTER TABLE usage ADD COLUMN runtime_secs BIGINT NOT NULL DEFAULT 0 CHECK (runtime_secs >= 0);
CREATE INDEX usage_template ON usage (template_id, at) WHERE template_id IS NOT NULL;
CREATE INDEX referrals_referred ON referrals (referred_id);

-- Templates under a creator program, and who made them.
CREATE TABLE templates (
    id           TEXT PRIMARY KEY,
    program      TEXT NOT NULL,
    creator_id   TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX templates_creator ON templates (creator_id);

-- A referrer's opt-in to an affiliate program. Permanent: rows are never updated or deleted.
-- paying_referrals is the count that made the opt-in allowed, kept for the record.
CREATE TABLE affiliate_enrollments (
    program          TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    opted_in_at      BIGINT NOT NULL,
    paying_referrals BIGINT NOT NULL,
    recorded_at      BIGINT NOT NULL,
    content_hash     TEXT NOT NULL,
    PRIMARY KEY (program, account_id)
);

CREATE FUNCTION affiliate_enrollments_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an affiliate opt-in is permanent';
END;
$$;
CREATE TRIGGER affiliate_enrollments_permanent_update BEFORE UPDATE ON affiliate_enrollments
    FOR EACH ROW EXECUTE FUNCTION affiliate_enrollments_permanent();
CREATE TRIGGER affiliate_enrollments_permanent_delete BEFORE DELETE ON affiliate_enrollments
    FOR EACH ROW EXECUTE FUNCTION affiliate_enrollments_permanent();

-- Commissions, bonuses and clawbacks belong to an earning stream: (stream, subject) where
-- stream is domain::program::earnings::Stream and subject a referral id or a template id.
-- Accrual posts the difference between what the facts say a stream earned and what the
-- ledger holds for it (domain::program::trueup), so the ledger, not a marker per usage row,
-- is what makes posting idempotent. note says why a transaction was posted.
ALTER TABLE ledger_transactions ADD COLUMN stream TEXT;
ALTER TABLE ledger_transactions ADD COLUMN subject TEXT;
ALTER TABLE ledger_transactions ADD COLUMN note TEXT;
UPDATE ledger_transactions SET stream = 'referral', subject = referral_id
    WHERE kind IN ('accrual', 'clawback') AND referral_id IS NOT NULL;
CREATE INDEX ledger_stream ON ledger_transactions (subject, stream) WHERE subject IS NOT NULL;

-- What the current write transaction must re-accrue: referred accounts and templates whose
-- facts changed. Filled and emptied inside the same transaction.
CREATE TABLE accrual_scope (
    kind TEXT NOT NULL CHECK (kind IN ('account', 'template')),
    id   TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
