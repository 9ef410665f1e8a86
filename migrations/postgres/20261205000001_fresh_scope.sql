-- Accrual scope gains 'fresh': accounts whose only change in a write is new charges, which
-- accrual folds on their own instead of re-reading the account's history. The table is
-- filled and emptied inside one transaction, so it is recreated rather than altered.
DROP TABLE accrual_scope;
CREATE TABLE accrual_scope (
    kind TEXT NOT NULL CHECK (kind IN ('account', 'template', 'fresh')),
    id   TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
