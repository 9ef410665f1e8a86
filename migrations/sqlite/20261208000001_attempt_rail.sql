-- Each attempt carries the rail it was sent on (a payout's rail never changes), so a provider
-- record is linked by its attempt token in one covering-index lookup. SQLite cannot add a
-- NOT NULL column without a default; every attempt is written with its rail, and these
-- are filled here.
ALTER TABLE payout_attempts ADD COLUMN rail TEXT;
UPDATE payout_attempts SET rail = (SELECT p.rail FROM payouts p WHERE p.id = payout_attempts.payout_id);
DROP INDEX payout_attempts_rail_ref;
CREATE INDEX payout_attempts_rail_ref ON payout_attempts (rail_ref, rail, payout_id);
