-- Provider objects that name a payout but are not the payment its state rests on (issue 16,
-- A1): a second transfer in a Stripe transfer_group, a batch under another attempt's PayPal
-- sender_batch_id, another Wise transfer of an attempt. Such a reading never moves the payout;
-- it is kept here, once per object, for operators and reconciliation (which reports every
-- row seen in its period as duplicate_at_provider). Twin of the PostgreSQL file.
CREATE TABLE payout_duplicates (
    payout_id       TEXT NOT NULL REFERENCES payouts (id),
    rail            TEXT NOT NULL,
    object_ref      TEXT NOT NULL,
    -- The last reading of the object: domain::tracking::RailState code and the provider's word.
    state           TEXT NOT NULL,
    provider_status TEXT NOT NULL,
    source          TEXT NOT NULL,
    first_seen_at   INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    PRIMARY KEY (payout_id, object_ref)
);
CREATE INDEX payout_duplicates_seen ON payout_duplicates (first_seen_at);

-- The provider's id an exception is about, kept with it: a duplicate seen by a webhook may
-- have no record in the run that reports it.
ALTER TABLE recon_exceptions ADD COLUMN record_id TEXT;
