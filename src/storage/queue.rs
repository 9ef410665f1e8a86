//! The payout job and its queue, shared by both backends.
//!
//! A payout's job is written in the same transaction as the state change that calls for it
//! (each backend's `push_tasks`), so there is never a payout without its next job, nor a job
//! for a change that rolled back.

use std::time::Duration;

use apalis::prelude::{Task, TaskBuilder};
use serde::{Deserialize, Serialize};

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

/// A job as both queues store it: the JSON payload and apalis's bookkeeping.
pub(crate) type QueuedTask = Task<Vec<u8>>;

/// The job that advances `payout` after `delay`. Its idempotency key names the payout and the
/// reason, so the queue keeps one job per step.
pub(crate) fn payout_task(
    payout: &PayoutId,
    delay: Duration,
    dedupe: &str,
) -> StoreResult<QueuedTask> {
    let payload = serde_json::to_vec(&PayoutJob {
        payout_id: payout.to_string(),
    })
    .map_err(|e| super::StoreError::Corrupt(format!("cannot encode job: {e}")))?;
    // The queues store run times in whole seconds: round the delay up, never down.
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    let task = TaskBuilder::new(payload)
        .max_attempts(JOB_MAX_ATTEMPTS)
        .run_after(Duration::from_secs(secs))
        .idempotency_key(format!("payout:{payout}:{dedupe}"))
        .build();
    Ok(task)
}

/// The payout a job key names (`payout:{id}:{reason}`), if it is one of ours.
pub(crate) fn payout_of_key(key: &str) -> Option<&str> {
    key.strip_prefix("payout:")?
        .split_once(':')
        .map(|(id, _)| id)
}

/// The idempotency key a task was built with.
pub(crate) fn task_key(task: &QueuedTask) -> Option<&str> {
    task.ctx().idempotency_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_name_their_payout() {
        let id = PayoutId::parse("po_01JZ").unwrap();
        let task = payout_task(&id, Duration::ZERO, "sweep-01K").unwrap();
        assert_eq!(task_key(&task).and_then(payout_of_key), Some("po_01JZ"));
        assert_eq!(payout_of_key("other:po_1:x"), None);
        assert_eq!(payout_of_key("payout:po_1"), None);
    }
}
