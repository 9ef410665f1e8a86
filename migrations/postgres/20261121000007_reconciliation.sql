-- PostgreSQL twin of migrations/sqlite/20261121000007_reconciliation.sql; keep the two in step.
--
-- Reconciliation (issue 7): provider records per run, the disagreements found, and the
-- resolutions operators make (which outlive runs).

-- The token the provider echoes back for an attempt (domain::reconcile::rail_reference), so
-- a provider record finds its payout by one indexed join.
ALTER TABLE payout_attempts ADD COLUMN rail_ref TEXT;
CREATE INDEX payout_attempts_rail_ref ON payout_attempts (rail_ref);
-- Matching by amount and date looks payouts up by rail and payee.
CREATE INDEX payouts_payee ON payouts (rail, lower(destination));

CREATE TABLE recon_runs (
    id                     TEXT PRIMARY KEY,
    started_at             BIGINT NOT NULL,
    finished_at            BIGINT,
    period_from            TEXT NOT NULL,
    period_to              TEXT NOT NULL,
    rails                  TEXT NOT NULL,
    source                 TEXT NOT NULL,
    trigger                TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    error                  TEXT,
    amount_tolerance_minor BIGINT NOT NULL,
    date_tolerance_hours   BIGINT NOT NULL,
    -- Totals per rail and currency, written when the run completes (JSON).
    summary                TEXT
);
CREATE INDEX recon_runs_started ON recon_runs (started_at);

-- What the provider says it moved, as read in one run. payout_id is filled by matching.
CREATE TABLE recon_records (
    run_id          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    rail            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    reference       TEXT,
    payout_hint     TEXT,
    group_id        TEXT,
    payee           TEXT NOT NULL,
    currency        TEXT NOT NULL,
    units           NUMERIC(38,0) NOT NULL,
    state           TEXT NOT NULL,
    provider_status TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    payout_id       TEXT,
    matched_by      TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX recon_records_payout ON recon_records (run_id, payout_id);

CREATE TABLE recon_exceptions (
    run_id     TEXT NOT NULL REFERENCES recon_runs (id),
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    rail       TEXT NOT NULL,
    payout_id  TEXT,
    record_seq BIGINT,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX recon_exceptions_record ON recon_exceptions (run_id, record_seq);
CREATE INDEX recon_exceptions_id ON recon_exceptions (id);

-- Keyed by the exception's stable id, so a later run finding the same disagreement shows it
-- resolved.
CREATE TABLE recon_resolutions (
    exception_id TEXT PRIMARY KEY,
    note         TEXT NOT NULL,
    resolved_by  TEXT NOT NULL,
    resolved_at  BIGINT NOT NULL
);

-- The worker's daily reconciliation, one claim per UTC day: however many workers tick, one
-- runs it. A failed run keeps its claim (it is visible with its error); rerun it by command.
CREATE TABLE recon_daily (
    day        TEXT PRIMARY KEY,
    claimed_at BIGINT NOT NULL
);
