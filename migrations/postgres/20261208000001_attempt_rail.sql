-- Each attempt carries the rail it was sent on (a payout's rail never changes), so a provider
-- record is linked by its attempt token in one index-only lookup: token, rail and payout are
-- all in the index. Joining payouts for the rail cost a second probe and two heap reads per
-- record, the larger part of storing a reconciliation's records.
ALTER TABLE payout_attempts ADD COLUMN rail TEXT;
UPDATE payout_attempts SET rail = p.rail FROM payouts p WHERE p.id = payout_attempts.payout_id;
ALTER TABLE payout_attempts ALTER COLUMN rail SET NOT NULL;
DROP INDEX payout_attempts_rail_ref;
CREATE INDEX payout_attempts_rail_ref ON payout_attempts (rail_ref) INCLUDE (rail, payout_id);
-- A record naming our payout id is checked against its attempts' rail the same way.
CREATE INDEX payout_attempts_payout_rail ON payout_attempts (payout_id) INCLUDE (rail);
