-- Operator actions on payouts (retry, cancel, mark-paid, release-hold): one row per request,
-- with its reason and who asked, kept for good like the payout's events. `state` is done,
-- or pending_approval / approved / rejected once an action needs a second operator.
-- `payouts.attempt_base`: attempts up to this number no longer count against the maximum
-- (an operator's retry grants a fresh budget). The twin of
-- migrations/sqlite/20261202200001.
CREATE TABLE operator_actions (
    id            TEXT PRIMARY KEY,
    payout_id     TEXT NOT NULL REFERENCES payouts (id),
    action        TEXT NOT NULL,
    reference     TEXT,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    state         TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    from_status   TEXT,
    to_status     TEXT
);
CREATE INDEX operator_actions_payout ON operator_actions (payout_id, requested_at);
CREATE INDEX operator_actions_state ON operator_actions (state, requested_at);
CREATE FUNCTION operator_actions_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_actions are kept for good';
END;
$$;
CREATE TRIGGER operator_actions_no_delete BEFORE DELETE ON operator_actions
    FOR EACH ROW EXECUTE FUNCTION operator_actions_kept();
ALTER TABLE payouts ADD COLUMN attempt_base BIGINT NOT NULL DEFAULT 0;

-- A paused rail sends nothing new: its payouts wait (their jobs are delayed, not failed) and
-- work already on the wire finishes. One row per pause; the live one has no resumed_at.
CREATE TABLE rail_pauses (
    id          TEXT PRIMARY KEY,
    rail        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    paused_by   TEXT NOT NULL,
    paused_at   BIGINT NOT NULL,
    resumed_by  TEXT,
    resumed_at  BIGINT,
    resume_reason TEXT
);
CREATE UNIQUE INDEX rail_pauses_live ON rail_pauses (rail) WHERE resumed_at IS NULL;

-- The state of the provider's last reading (domain::tracking::RailState code), so that an
-- operator's resolve-dispute can tell a disputed payout from one handed over for another
-- reason.
ALTER TABLE payouts ADD COLUMN provider_state TEXT;
