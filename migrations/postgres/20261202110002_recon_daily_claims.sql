-- A daily reconciliation's claim names its run and lapses: a run that failed gives it back
-- (expires_at = 0), a worker that died lets it expire, and a later tick runs the day again.
-- Only a completed run keeps its day for good. Claims made before this were final, and stay
-- so. The twin of migrations/sqlite/20261202110002.
ALTER TABLE recon_daily ADD COLUMN run_id TEXT;
ALTER TABLE recon_daily ADD COLUMN expires_at BIGINT;
ALTER TABLE recon_daily ADD COLUMN completed_at BIGINT;
UPDATE recon_daily SET completed_at = claimed_at;
