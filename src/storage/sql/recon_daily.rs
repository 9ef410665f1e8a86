//! The daily reconciliation's claims on its days (see `reconcile::schedule`). A claim names
//! its run and lapses: a run that failed gives it back, a worker that died lets it expire,
//! and a later tick runs the day again. Only a completed run keeps its day for good.

use std::time::Duration;

use chrono::NaiveDate;

use super::{Store, StoreResult, to_millis};
use crate::storage::Trigger;

impl Store {
    /// Claims `day` for the run `run_id` until `ttl` from now; `false` when the day's run
    /// completed or another worker's claim is live. A lapsed claim is taken over, and a
    /// scheduled run of the day still marked running is marked failed: its task is gone.
    pub async fn recon_claim_day(
        &self,
        day: NaiveDate,
        run_id: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let now = to_millis(crate::clock::now());
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4));
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO recon_daily (day, claimed_at, run_id, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (day) DO UPDATE SET claimed_at = excluded.claimed_at, \
               run_id = excluded.run_id, expires_at = excluded.expires_at \
             WHERE recon_daily.completed_at IS NULL AND recon_daily.expires_at < $2",
        )
        .bind(day.to_string())
        .bind(now)
        .bind(run_id)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE recon_runs SET status = 'failed', finished_at = $1, error = $2 \
             WHERE trigger = $3 AND period_from = $4 AND status = 'running'",
        )
        .bind(now)
        .bind("its worker stopped before the run finished; the day is reconciled again")
        .bind(Trigger::Schedule.code())
        .bind(day.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives back the claim of a run that failed or stopped, and marks the run failed if it
    /// is still running, in one transaction: whoever sees the run failed also finds the day
    /// free, so the next tick runs it again.
    pub async fn recon_abandon_day(
        &self,
        day: NaiveDate,
        run_id: &str,
        reason: &str,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE recon_daily SET expires_at = 0 \
             WHERE day = $1 AND run_id = $2 AND completed_at IS NULL",
        )
        .bind(day.to_string())
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE recon_runs SET status = 'failed', finished_at = $2, error = $3 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .bind(to_millis(crate::clock::now()))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps `day` for good: its run completed.
    pub async fn recon_complete_day(&self, day: NaiveDate, run_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE recon_daily SET completed_at = $3 WHERE day = $1 AND run_id = $2")
            .bind(day.to_string())
            .bind(run_id)
            .bind(to_millis(crate::clock::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Days in `[since, before)` whose claim lapsed without a completed run, oldest first.
    pub async fn recon_days_to_retry(
        &self,
        since: NaiveDate,
        before: NaiveDate,
    ) -> StoreResult<Vec<NaiveDate>> {
        let days: Vec<String> = sqlx::query_scalar(
            "SELECT day FROM recon_daily \
             WHERE completed_at IS NULL AND expires_at < $1 AND day >= $2 AND day < $3 \
             ORDER BY day",
        )
        .bind(to_millis(crate::clock::now()))
        .bind(since.to_string())
        .bind(before.to_string())
        .fetch_all(&self.pool)
        .await?;
        days.iter()
            .map(|d| super::parse_stored("reconciliation day", d))
            .collect()
    }
}
