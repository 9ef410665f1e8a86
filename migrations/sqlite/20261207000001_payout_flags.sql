-- Why a payout is held (issue 22): a program's review rule or the platform's tax rule raised
-- a flag when the payout was created (domain::review). A payout is held while any flag is
-- open; an operator's approval clears the review flags, a tax form on file clears the tax
-- ones, a rejection clears them all. Rows are never deleted: they are the review's record.
CREATE TABLE payout_flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payout_id    TEXT NOT NULL,
    rule         TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    raised_at    INTEGER NOT NULL,
    cleared_at   INTEGER,
    cleared_by   TEXT,
    decision     TEXT CHECK (decision IS NULL OR decision IN ('approved', 'rejected', 'form_received')),
    note         TEXT
);
CREATE INDEX payout_flags_payout ON payout_flags (payout_id);
CREATE INDEX payout_flags_open ON payout_flags (rule, payout_id) WHERE cleared_at IS NULL;
-- The shared-destination rule looks up other accounts' methods by destination.
CREATE INDEX payout_methods_destination ON payout_methods (lower(destination));
