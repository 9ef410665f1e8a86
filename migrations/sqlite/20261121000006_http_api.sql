-- HTTP API: cooling-off after payout-method changes, stored idempotent responses, and keyset
-- pagination of an account's payouts.

-- When this method last changed in a way that warrants a cooling-off (an account-takeover
-- defence): its destination was replaced, or it was added to an account that already had
-- another method. NULL: never changed (an account's first methods are not held).
ALTER TABLE payout_methods ADD COLUMN changed_at INTEGER;

CREATE TRIGGER payout_method_replaced AFTER UPDATE OF destination ON payout_methods
WHEN OLD.destination <> NEW.destination
BEGIN
    UPDATE payout_methods SET changed_at = NEW.updated_at
     WHERE account_id = NEW.account_id AND rail = NEW.rail;
END;

-- Methods written together (one ingest batch, one timestamp) do not hold each other.
CREATE TRIGGER payout_method_added AFTER INSERT ON payout_methods
WHEN EXISTS (SELECT 1 FROM payout_methods o
              WHERE o.account_id = NEW.account_id AND o.rail <> NEW.rail
                AND o.updated_at < NEW.updated_at)
BEGIN
    UPDATE payout_methods SET changed_at = NEW.updated_at
     WHERE account_id = NEW.account_id AND rail = NEW.rail;
END;

-- One row per Idempotency-Key the API has seen, in its scope (e.g. an account's withdrawals).
-- status_code NULL: the first request is still in flight; a second one gets 409 until it
-- finishes (or until the row is stale and a retry takes it over). Then the stored response is
-- what every repeat of the same request gets.
CREATE TABLE api_idempotency (
    scope           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    status_code     INTEGER,
    response_body   TEXT,
    started_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    PRIMARY KEY (scope, idempotency_key)
);

-- An account's payouts, newest first, by keyset (created_at, id).
CREATE INDEX payouts_account_page ON payouts (account_id, created_at DESC, id DESC);
