-- Core schema: platform facts, the double-entry ledger, payouts with their attempts and events.
-- Money columns named *_units are INTEGER fixed-point at 10 decimal places (see
-- domain::money::UNIT_SCALE), so every SUM is exact integer arithmetic.
-- Times are INTEGER milliseconds since the Unix epoch (UTC), so they compare and sort exactly.

CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    created_at          INTEGER NOT NULL,
    email               TEXT NOT NULL,
    email_normalized    TEXT NOT NULL,
    payment_fingerprint TEXT,
    country             TEXT,
    hosted_machines     INTEGER NOT NULL DEFAULT 0,
    content_hash        TEXT NOT NULL
);

-- Explicitly connected accounts; (account_a, account_b) is ordered so a link is stored once.
CREATE TABLE account_links (
    account_a    TEXT NOT NULL,
    account_b    TEXT NOT NULL,
    reason       TEXT,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (account_a, account_b)
);

-- One referral per (program, referred account). status: pending (an account is not known yet),
-- qualified, or disqualified with a reason code from domain::referral::Disqualification.
CREATE TABLE referrals (
    id               TEXT PRIMARY KEY,
    program          TEXT NOT NULL,
    referrer_id      TEXT NOT NULL,
    referred_id      TEXT NOT NULL,
    referred_at      INTEGER NOT NULL,
    template_id      TEXT,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'qualified', 'disqualified')),
    disqualification TEXT,
    judged_at        INTEGER,
    content_hash     TEXT NOT NULL,
    UNIQUE (program, referred_id)
);
CREATE INDEX referrals_referrer ON referrals (referrer_id);
CREATE INDEX referrals_pending ON referrals (status) WHERE status = 'pending';

CREATE TABLE usage (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    category     TEXT NOT NULL,
    units        INTEGER NOT NULL CHECK (units > 0),
    currency     TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX usage_account ON usage (account_id);

CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    usage_id     TEXT NOT NULL REFERENCES usage (id),
    at           INTEGER,
    units        INTEGER NOT NULL CHECK (units > 0),
    content_hash TEXT NOT NULL
);
CREATE INDEX refunds_usage ON refunds (usage_id);

-- Credit purchases: recorded for the record; they earn nothing until spent as usage.
CREATE TABLE purchases (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    units        INTEGER NOT NULL CHECK (units > 0),
    currency     TEXT NOT NULL,
    content_hash TEXT NOT NULL
);

CREATE TABLE payout_methods (
    account_id   TEXT NOT NULL,
    rail         TEXT NOT NULL,
    destination  TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, rail)
);

-- Ledger transactions. Accruals and clawbacks name their source record and referral, and the
-- unique index makes posting them idempotent. Payout transactions are holds: pending, then
-- posted or voided exactly once.
CREATE TABLE ledger_transactions (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('accrual', 'clawback', 'payout')),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    source_id   TEXT,
    referral_id TEXT,
    payout_id   TEXT,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE UNIQUE INDEX ledger_source ON ledger_transactions (kind, source_id, referral_id)
    WHERE source_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_payout ON ledger_transactions (payout_id) WHERE payout_id IS NOT NULL;

-- Postings never change. holder/program/rail are the parts of domain::ledger::Book.
CREATE TABLE ledger_postings (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id   TEXT NOT NULL REFERENCES ledger_transactions (id),
    book     TEXT NOT NULL,
    holder   TEXT,
    program  TEXT,
    rail     TEXT,
    currency TEXT NOT NULL,
    units    INTEGER NOT NULL CHECK (units <> 0)
);
CREATE INDEX postings_holder ON ledger_postings (holder, program, book);
CREATE INDEX postings_txn ON ledger_postings (txn_id);

CREATE TRIGGER ledger_postings_append_only_update BEFORE UPDATE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger_postings are append-only'); END;
CREATE TRIGGER ledger_postings_append_only_delete BEFORE DELETE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger_postings are append-only'); END;
-- A hold resolves once: pending -> posted | voided, never back.
CREATE TRIGGER ledger_status_only_from_pending BEFORE UPDATE OF status ON ledger_transactions
WHEN OLD.status <> 'pending' AND NEW.status <> OLD.status
BEGIN SELECT RAISE(ABORT, 'a resolved ledger transaction cannot change status'); END;

-- Payouts. lease_owner/lease_expires_at/fence implement fencing: every state change names the
-- fence it holds, and a worker whose lease was taken over can change nothing.
CREATE TABLE payouts (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    program          TEXT NOT NULL,
    rail             TEXT NOT NULL,
    destination      TEXT NOT NULL,
    currency         TEXT NOT NULL,
    units            INTEGER NOT NULL CHECK (units > 0),
    status           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    hold_txn_id      TEXT NOT NULL REFERENCES ledger_transactions (id),
    attempts         INTEGER NOT NULL DEFAULT 0,
    lookup_failures  INTEGER NOT NULL DEFAULT 0,
    next_action_at   INTEGER,
    provider_ref     TEXT,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX payouts_account ON payouts (account_id, created_at);
CREATE INDEX payouts_active ON payouts (status, next_action_at);

-- One row per send; provider_key is persisted before the request leaves.
CREATE TABLE payout_attempts (
    payout_id    TEXT NOT NULL REFERENCES payouts (id),
    attempt_no   INTEGER NOT NULL,
    provider_key TEXT NOT NULL,
    outcome      TEXT NOT NULL DEFAULT 'in_flight'
                 CHECK (outcome IN ('in_flight', 'landed', 'retry', 'unknown', 'permanent')),
    provider_ref TEXT,
    detail       TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    PRIMARY KEY (payout_id, attempt_no)
);

-- Why a payout is where it is: every state change, append-only.
CREATE TABLE payout_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    payout_id   TEXT NOT NULL REFERENCES payouts (id),
    at          INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    attempt_no  INTEGER,
    worker      TEXT,
    reason      TEXT NOT NULL
);
CREATE INDEX payout_events_payout ON payout_events (payout_id, id);
CREATE TRIGGER payout_events_append_only_update BEFORE UPDATE ON payout_events
BEGIN SELECT RAISE(ABORT, 'payout_events are append-only'); END;
CREATE TRIGGER payout_events_append_only_delete BEFORE DELETE ON payout_events
BEGIN SELECT RAISE(ABORT, 'payout_events are append-only'); END;
