//! Fenced steps: a worker *claims* a payout, which bumps its `fence` and sets a lease. Every
//! later write names that fence in its WHERE clause, so a worker whose lease expired and was
//! taken over changes nothing ([`StoreError`] `LeaseLost`), and the new holder starts with a
//! lookup. Every status write here passes the transition table (`domain::transition`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ledger::settle_ledger;
use super::payouts::{Actor, append_event, fetch_payout};
use super::{
    Store, StoreError, StoreResult, Tx, WriteLock, enqueue_payout_job, from_millis, parse_code,
    parse_stored, to_millis,
};
use crate::domain::ids::PayoutId;
use crate::domain::payout::PayoutStatus;
use crate::domain::step::{AttemptOutcome, Step, Tally};
use crate::domain::tracking::LedgerEffect;
use crate::domain::transition::{self, Mover};
use crate::storage::payout_views::{Claim, Lease, lease_lost};
use crate::storage::queue::payout_task;

/// status, lease_expires_at, next_action_at.
type ClaimRow = (String, Option<i64>, Option<i64>);

impl Store {
    /// Claims a payout for one step of work. See the module docs on fencing.
    pub async fn claim(&self, id: &PayoutId, owner: &str, ttl: Duration) -> StoreResult<Claim> {
        let now = crate::clock::now();
        let now_ms = to_millis(now);
        let expires = now_ms + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        // The queue stores run times in whole seconds, so a job may start up to 1 s early.
        let fence: Option<i64> = sqlx::query_scalar(
            "UPDATE payouts SET lease_owner = $1, lease_expires_at = $2, fence = fence + 1, updated_at = $3 \
             WHERE id = $4 \
               AND (status IN ('queued', 'submitting', 'retry_scheduled', 'outcome_unknown', 'processing') \
                    OR (status = 'paid' AND next_action_at IS NOT NULL)) \
               AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
               AND (next_action_at IS NULL OR next_action_at <= $3 + 1000) \
             RETURNING fence",
        )
        .bind(owner)
        .bind(expires)
        .bind(now_ms)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match fence {
            Some(fence) => {
                let payout = fetch_payout(&mut tx, id.as_str())
                    .await?
                    .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
                Claim::Acquired {
                    lease: Lease {
                        payout_id: id.clone(),
                        owner: owner.to_string(),
                        fence,
                        ttl,
                    },
                    payout: Box::new(payout),
                }
            }
            None => {
                let row: Option<ClaimRow> = sqlx::query_as(
                    "SELECT status, lease_expires_at, next_action_at FROM payouts WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let (status, lease, next) =
                    row.ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
                let status = parse_code("payout status", &status, PayoutStatus::from_code)?;
                // A paid payout is stepped while a look is scheduled: the watch's last look,
                // at its end, schedules none.
                let watched = status == PayoutStatus::Paid && next.is_some();
                match (status.is_active() || watched, lease, next) {
                    (false, _, _) => Claim::Settled(status),
                    (true, Some(until), _) if until >= now_ms => Claim::Busy {
                        until: from_millis(until),
                    },
                    (true, _, Some(at)) => Claim::NotDue {
                        at: from_millis(at),
                    },
                    (true, _, None) => Claim::NotDue { at: now },
                }
            }
        };
        super::commit(tx).await?;
        Ok(claim)
    }

    /// Pushes a held lease's expiry `ttl` from now. `LeaseLost` once it was released or taken
    /// over.
    pub async fn extend_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        let now = to_millis(crate::clock::now());
        let done = sqlx::query(
            "UPDATE payouts SET lease_expires_at = $1 \
             WHERE id = $2 AND fence = $3 AND lease_owner = $4 AND lease_expires_at > $5",
        )
        .bind(now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4))
        .bind(lease.payout_id.as_str())
        .bind(lease.fence)
        .bind(&lease.owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(lease_lost(lease))
        }
    }

    /// Lookups in a row that could not reach the provider.
    pub async fn lookup_failures(&self, id: &PayoutId) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT lookup_failures FROM payouts WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// When the last attempt started, for the settle delay before a lookup.
    pub async fn last_attempt_started(&self, id: &PayoutId) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MAX(started_at) FROM payout_attempts WHERE payout_id = $1")
                .bind(id.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(at.map(from_millis))
    }

    /// Persists attempt `attempt`, its provider key and the token the rail will echo for it
    /// (`rail_ref`), and moves the payout to `submitting`,
    /// *before* the request leaves. Fails with `LeaseLost` if the lease was taken over or has
    /// lapsed; otherwise the lease is renewed for its full life, which outlasts the request.
    pub async fn begin_attempt(
        &self,
        lease: &Lease,
        from: PayoutStatus,
        attempt: u32,
        provider_key: &str,
        rail_ref: &str,
        context: Option<&str>,
    ) -> StoreResult<()> {
        transition::check(from, PayoutStatus::Submitting, Mover::Worker)?;
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        prove_lease(&mut tx, lease).await?;
        let now = to_millis(crate::clock::now());
        // An attempt still marked in flight belonged to a worker that stopped mid-send; the
        // lookup that led here proved it did not land. It does not use up an attempt.
        sqlx::query(
            "UPDATE payout_attempts SET outcome = $4, finished_at = $1, \
               detail = COALESCE(detail, $2) \
             WHERE payout_id = $3 AND outcome = 'in_flight'",
        )
        .bind(now)
        .bind(context.unwrap_or("cut off mid-send; lookup found no transfer"))
        .bind(lease.payout_id.as_str())
        .bind(AttemptOutcome::Interrupted.code())
        .execute(&mut *tx)
        .await?;
        fenced_update(
            &mut tx,
            lease,
            "status = 'submitting', attempts = $3, updated_at = $4",
            i64::from(attempt),
            now,
        )
        .await?;
        // The attempt takes its payout's rail (just updated under this lease: the row is there).
        sqlx::query(
            "INSERT INTO payout_attempts (payout_id, attempt_no, provider_key, started_at, rail_ref, \
               rail) \
             SELECT $1, $2, $3, $4, $5, rail FROM payouts WHERE id = $1",
        )
        .bind(lease.payout_id.as_str())
        .bind(i64::from(attempt))
        .bind(provider_key)
        .bind(now)
        .bind(rail_ref)
        .execute(&mut *tx)
        .await?;
        append_event(
            &mut tx,
            &lease.payout_id,
            Some(from),
            PayoutStatus::Submitting,
            Some(attempt),
            Actor {
                worker: Some(&lease.owner),
                source: "submit",
            },
            &format!(
                "{}sending attempt {attempt} with idempotency key {provider_key}",
                context.map(|c| format!("{c}; ")).unwrap_or_default()
            ),
        )
        .await?;
        super::commit(tx).await?;
        Ok(())
    }

    /// Records the result of a step: the attempt's outcome, the payout's new state and why,
    /// the ledger (post on paid, void on failed) and the follow-up job, in one transaction.
    /// The lease is released.
    pub async fn record_step(
        &self,
        lease: &Lease,
        from: PayoutStatus,
        step: &Step,
    ) -> StoreResult<()> {
        transition::check(from, step.to, Mover::Worker)?;
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        let now = crate::clock::now();
        let hold = write_step_status(&mut tx, lease, step, now).await?;
        if let Some(settled) = &step.settled {
            sqlx::query(
                "UPDATE payout_attempts SET outcome = $1, detail = $2, \
                   provider_ref = COALESCE($3, provider_ref), finished_at = $4 \
                 WHERE payout_id = $5 AND attempt_no = $6",
            )
            .bind(settled.outcome.code())
            .bind(settled.detail.as_deref())
            .bind(step.provider_ref.as_deref())
            .bind(to_millis(now))
            .bind(lease.payout_id.as_str())
            .bind(i64::from(settled.attempt))
            .execute(&mut *tx)
            .await?;
        }
        if from != step.to {
            let effect = LedgerEffect::of_move(step.to);
            settle_ledger(&mut tx, &lease.payout_id, &hold, effect).await?;
        }
        // A poll that saw nothing new leaves no event: the payout's row shows when it last
        // looked, and a months-long UNCLAIMED would otherwise bury the history.
        if from != step.to || step.tally != Tally::QuietPoll {
            append_event(
                &mut tx,
                &lease.payout_id,
                Some(from),
                step.to,
                step.settled.as_ref().map(|s| s.attempt),
                Actor {
                    worker: Some(&lease.owner),
                    source: step.source.code(),
                },
                &step.reason,
            )
            .await?;
        }
        if let Some(delay) = step.next_in {
            enqueue_payout_job(
                &mut tx,
                &lease.payout_id,
                delay,
                &format!("fence-{}", lease.fence),
            )
            .await?;
        }
        super::commit(tx).await?;
        Ok(())
    }

    /// Gives a lease back without changing state, scheduling the next look after `delay`.
    pub async fn release(&self, lease: &Lease, delay: Duration, why: &str) -> StoreResult<()> {
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        let now = to_millis(crate::clock::now());
        let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        fenced_update(
            &mut tx,
            lease,
            "lease_owner = NULL, lease_expires_at = NULL, next_action_at = $3, updated_at = $4",
            next,
            now,
        )
        .await?;
        enqueue_payout_job(
            &mut tx,
            &lease.payout_id,
            delay,
            &format!("fence-{}-{why}", lease.fence),
        )
        .await?;
        super::commit(tx).await?;
        Ok(())
    }

    /// Enqueues a job for a payout whose job went missing (a crash between steps, a job that
    /// ran too early). Deduplicated per due time, so calling it often is harmless.
    pub async fn schedule_check(&self, id: &PayoutId, at: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        let delay = (at - crate::clock::now()).to_std().unwrap_or_default();
        enqueue_payout_job(&mut tx, id, delay, &format!("check-{}", to_millis(at))).await?;
        super::commit(tx).await?;
        Ok(())
    }

    /// The safety net: active payouts whose next step is overdue, whose lease (if any) has
    /// expired and that hold no job a worker will fetch get a fresh one. Returns how many.
    ///
    /// It never relies on a job key being free: keys stay taken for as long as their job's
    /// row exists, finished or not, so a key derived from the payout's state could already be
    /// burnt. It reads which payouts hold a runnable job and gives each of the others a job
    /// under a key nothing else makes (a new ULID).
    pub async fn enqueue_overdue(&self, grace: Duration) -> StoreResult<usize> {
        let now = to_millis(crate::clock::now());
        let cutoff = now - i64::try_from(grace.as_millis()).unwrap_or(0);
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payouts \
             WHERE (status IN ('queued', 'submitting', 'retry_scheduled', 'outcome_unknown', 'processing') \
                    OR (status = 'paid' AND next_action_at IS NOT NULL)) \
               AND (lease_expires_at IS NULL OR lease_expires_at < $1) \
               AND COALESCE(next_action_at, 0) <= $2 \
               AND COALESCE(lease_expires_at, 0) <= $2",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let covered = super::runnable_job_payouts(&mut tx).await?;
        let tasks = due
            .iter()
            .filter(|id| !covered.contains(id.as_str()))
            .map(|id| {
                let id: PayoutId = parse_stored("payout id", id)?;
                payout_task(
                    &id,
                    Duration::ZERO,
                    &format!("sweep-{}", crate::clock::ulid()),
                )
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let count = tasks.len();
        if count > 0 {
            super::push_tasks(&mut tx, tasks).await?;
        }
        super::commit(tx).await?;
        Ok(count)
    }
}

/// The payout row's part of a step: its status and what the step learned, with the lease
/// released, fenced like every step write. Returns the payout's hold.
async fn write_step_status(
    tx: &mut Tx,
    lease: &Lease,
    step: &Step,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    let next_at = step
        .next_in
        .map(|d| to_millis(now) + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4));
    let hold: Option<String> = sqlx::query_scalar(
        "UPDATE payouts SET status = $1, next_action_at = $2, \
               provider_ref = COALESCE($3, provider_ref), last_error = $4, \
               lookup_failures = CASE WHEN $5 THEN lookup_failures + 1 ELSE 0 END, \
               provider_status = COALESCE($10, provider_status), \
               provider_state = COALESCE($14, provider_state), \
               provider_status_at = CASE WHEN $11 IS NOT NULL AND \
                 (provider_status_at IS NULL OR $11 > provider_status_at) \
                 THEN $11 ELSE provider_status_at END, \
               polls = CASE WHEN $12 THEN polls + 1 ELSE 0 END, \
               watch_until = CASE WHEN $1 = 'paid' AND status <> 'paid' AND $2 IS NOT NULL \
                 THEN $13 ELSE watch_until END, \
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $6 \
             WHERE id = $7 AND fence = $8 AND lease_owner = $9 AND lease_expires_at > $6 \
             RETURNING hold_txn_id",
    )
    .bind(step.to.code())
    .bind(next_at)
    .bind(step.provider_ref.as_deref())
    .bind(step.last_error.as_deref())
    .bind(step.tally == Tally::ReadFailed)
    .bind(to_millis(now))
    .bind(lease.payout_id.as_str())
    .bind(lease.fence)
    .bind(&lease.owner)
    .bind(
        step.observation
            .as_ref()
            .map(|o| o.provider_status.as_str()),
    )
    // Only the provider's own clock orders readings; ours would make a provider time with
    // coarser resolution look stale.
    .bind(
        step.observation
            .as_ref()
            .and_then(|o| o.occurred_at)
            .map(to_millis),
    )
    .bind(step.tally == Tally::QuietPoll)
    .bind(
        step.watch_for
            .map(|w| to_millis(now) + i64::try_from(w.as_millis()).unwrap_or(i64::MAX / 4)),
    )
    .bind(step.observation.as_ref().map(|o| o.state.code()))
    .fetch_optional(&mut **tx)
    .await?;
    hold.ok_or_else(|| lease_lost(lease))
}

/// Proves, inside `tx`, that `lease` is still ours and unexpired, and renews it for its full
/// life: the write that precedes a provider call, so the call ends before anyone may take
/// the payout over. `LeaseLost` otherwise.
pub(crate) async fn prove_lease(tx: &mut Tx, lease: &Lease) -> StoreResult<()> {
    let now = to_millis(crate::clock::now());
    let done = sqlx::query(
        "UPDATE payouts SET lease_expires_at = $1 \
         WHERE id = $2 AND fence = $3 AND lease_owner = $4 AND lease_expires_at > $5",
    )
    .bind(now + i64::try_from(lease.ttl.as_millis()).unwrap_or(i64::MAX / 4))
    .bind(lease.payout_id.as_str())
    .bind(lease.fence)
    .bind(&lease.owner)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(lease))
    }
}

/// `UPDATE payouts SET <set> WHERE id AND fence AND owner AND unexpired`, with `$3`/`$4`
/// bound to `a`/`b`.
pub(super) async fn fenced_update(
    tx: &mut Tx,
    lease: &Lease,
    set: &'static str,
    a: i64,
    b: i64,
) -> StoreResult<()> {
    let sql = format!(
        "UPDATE payouts SET {set} \
         WHERE id = $1 AND fence = $2 AND lease_owner = $5 AND lease_expires_at > $6"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.payout_id.as_str())
        .bind(lease.fence)
        .bind(a)
        .bind(b)
        .bind(&lease.owner)
        .bind(to_millis(crate::clock::now()))
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(lease_lost(lease))
    }
}
