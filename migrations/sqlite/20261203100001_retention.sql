-- Retention: a reconciliation run whose record copies were pruned says so (its summary and
-- exceptions, with the records they name, stay). Outgoing events are pruned by age once
-- no delivery is pending: an index for that scan.
ALTER TABLE recon_runs ADD COLUMN records_pruned_at INTEGER;
CREATE INDEX event_deliveries_pending ON event_deliveries (event_seq) WHERE state = 'pending';
