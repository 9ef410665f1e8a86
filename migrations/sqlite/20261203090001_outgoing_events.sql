-- Outgoing events (the outbox): each is written in the transaction of the change it reports,
-- then delivered to every endpoint subscribed to its type, in order per subject (a payout, an
-- account), with a log row per try. The twin of migrations/postgres/20261203090001.
CREATE TABLE event_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- NULL: every type; otherwise ',payout.paid,payout.failed,' (matched with LIKE).
    types       TEXT,
    secret      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    removed_at  INTEGER
);

CREATE TABLE outgoing_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- The exact bytes every delivery and replay sends.
    body        TEXT NOT NULL
);
CREATE INDEX outgoing_events_created ON outgoing_events (created_at);
CREATE INDEX outgoing_events_subject ON outgoing_events (subject, seq);

CREATE TABLE event_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq       INTEGER NOT NULL REFERENCES outgoing_events (seq),
    endpoint_id     TEXT NOT NULL REFERENCES event_endpoints (id),
    subject         TEXT NOT NULL,
    -- pending, delivered, gave_up (three days of failures), cancelled (endpoint removed).
    state           TEXT NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_try_at     INTEGER NOT NULL,
    leased_until    INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    -- Set on a replay: who asked for it.
    replayed_by     TEXT
);
CREATE INDEX event_deliveries_due ON event_deliveries (state, next_try_at);
CREATE INDEX event_deliveries_order ON event_deliveries (endpoint_id, subject, state, event_seq);
CREATE INDEX event_deliveries_event ON event_deliveries (event_seq);

CREATE TABLE event_delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES event_deliveries (id),
    try_no      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    http_status INTEGER,
    error       TEXT,
    took_ms     INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, try_no)
);

-- Accounts whose cash-out standing may have changed (accruals, payouts): the worker looks
-- again and reports `balance.payable` when one becomes able to cash out.
CREATE TABLE balance_checks (
    account_id  TEXT PRIMARY KEY,
    since       INTEGER NOT NULL
);
-- The program balances last seen payable; a new `balance.payable` needs the mark gone first.
CREATE TABLE payable_marks (
    account_id  TEXT NOT NULL,
    program     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    since       INTEGER NOT NULL,
    PRIMARY KEY (account_id, program, currency)
);
