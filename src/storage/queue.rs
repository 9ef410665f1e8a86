//! Transactional enqueue onto the apalis SQLite queue.
//!
//! A payout's job is written in the same transaction as the state change that calls for it,
//! so there is never a payout without its next job, nor a job for a change that rolled back.

use std::time::Duration;

use apalis::prelude::TaskBuilder;
use serde::{Deserialize, Serialize};
use sqlx::{Sqlite, Transaction};

use super::StoreResult;
use crate::domain::ids::PayoutId;

/// The queue every payout job lives on. Named explicitly: apalis's default is the Rust type
/// path, which would change with a refactor and strand queued jobs.
pub const PAYOUT_QUEUE: &str = "payouts";

/// How often apalis may re-run a job whose handler returned an error (a database hiccup, not
/// a provider failure: those are scheduled by the payout state machine itself).
const JOB_MAX_ATTEMPTS: usize = 5;

/// The job payload: which payout to advance. Everything else is read from the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutJob {
    pub payout_id: String,
}

/// Enqueues a job to advance `payout` after `delay`. `dedupe` names the reason; the queue
/// drops a second job with the same name, so a step never schedules its follow-up twice.
pub(crate) async fn enqueue_payout_job(
    tx: &mut Transaction<'static, Sqlite>,
    payout: &PayoutId,
    delay: Duration,
    dedupe: &str,
) -> StoreResult<()> {
    let task = payout_task(payout, delay, dedupe)?;
    apalis_sqlite::queries::push_tasks(&mut **tx, PAYOUT_QUEUE, &[task]).await?;
    Ok(())
}

/// The job that advances `payout` after `delay`, for callers that push many at once.
pub(crate) fn payout_task(
    payout: &PayoutId,
    delay: Duration,
    dedupe: &str,
) -> StoreResult<apalis_sqlite::SqliteTask> {
    let payload = serde_json::to_vec(&PayoutJob {
        payout_id: payout.to_string(),
    })
    .map_err(|e| super::StoreError::Corrupt(format!("cannot encode job: {e}")))?;
    // The queue stores run times in whole seconds: round the delay up, never down.
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    let task = TaskBuilder::new(payload)
        .max_attempts(JOB_MAX_ATTEMPTS)
        .run_after(Duration::from_secs(secs))
        .idempotency_key(format!("payout:{payout}:{dedupe}"))
        .build();
    Ok(task)
}
