-- HTTP API: cooling-off after payout-method changes, stored idempotent responses, and keyset
-- pagination of an account's payouts. The twin of migrations/sqlite/20261121000006.

-- When this method last changed in a way that warrants a cooling-off (an account-takeover
-- defence): its destination was replaced, or it was added to an account that already had
-- another method. NULL: never changed (an account's first methods are not held).
ALTER TABLE payout_methods ADD COLUMN changed_at BIGINT;

CREATE FUNCTION payout_method_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.destination <> NEW.destination THEN
            NEW.changed_at := NEW.updated_at;
        END IF;
    -- Methods written together (one ingest batch, one timestamp) do not hold each other.
    ELSIF EXISTS (SELECT 1 FROM payout_methods o
                   WHERE o.account_id = NEW.account_id AND o.rail <> NEW.rail
                     AND o.updated_at < NEW.updated_at) THEN
        NEW.changed_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payout_method_changed BEFORE INSERT OR UPDATE ON payout_methods
    FOR EACH ROW EXECUTE FUNCTION payout_method_changed();

-- One row per Idempotency-Key the API has seen, in its scope (e.g. an account's withdrawals).
-- status_code NULL: the first request is still in flight; a second one gets 409 until it
-- finishes (or until the row is stale and a retry takes it over). Then the stored response is
-- what every repeat of the same request gets.
CREATE TABLE api_idempotency (
    scope           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    status_code     BIGINT,
    response_body   TEXT,
    started_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    PRIMARY KEY (scope, idempotency_key)
);

-- An account's payouts, newest first, by keyset (created_at, id).
CREATE INDEX payouts_account_page ON payouts (account_id, created_at DESC, id DESC);
