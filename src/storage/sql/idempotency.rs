//! Idempotency-Keys of the API's withdrawals. The key's claim, the withdrawal and the
//! response it gets commit in one transaction under the account's write lock, so a repeat
//! waits for that commit and then replays the stored response, and a crash leaves nothing
//! behind.
//!
//! On SQLite, which has one writer and pays an fsync per commit, concurrent withdrawals are
//! committed as a group: one task takes every withdrawal waiting, runs each inside its own
//! savepoint of one transaction, commits once, and only then answers them all. A withdrawal
//! whose own work fails (a server error) is rolled back to its savepoint alone; a failed
//! commit answers every withdrawal of the group with an error, and nothing of theirs exists.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError, StoreResult, Tx, WriteLock, to_millis};
use crate::storage::idempotency_views::{Answer, Answerer, Keyed};
use crate::storage::payout_views::WithdrawalRequest;

/// (request_hash, status_code, response_body)
type KeyRow = (String, Option<i64>, Option<String>);

/// The most withdrawals one group commit takes: bounds the time a group holds the lock.
const GROUP_MAX: usize = 64;

/// One withdrawal under its key, as the caller asked for it.
struct KeyedWithdrawal {
    request: WithdrawalRequest,
    scope: String,
    request_hash: String,
    stale_after: Duration,
    answer: Answerer,
}

/// A withdrawal waiting for the group commit, with the store (and so the safeguards) it was
/// asked of and where its result goes.
struct Queued {
    store: Store,
    work: KeyedWithdrawal,
    reply: oneshot::Sender<StoreResult<Keyed>>,
}

/// The group committer's queue, shared by the store's clones. The committer starts on first
/// use, and again whenever the last one has stopped (its runtime ended, or a panic inside a
/// group): one failure never stops every later withdrawal.
#[derive(Debug, Default, Clone)]
pub(crate) struct GroupCommit(Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<Queued>>>>);

impl GroupCommit {
    /// The running committer's queue, starting a committer if none runs.
    fn queue(&self) -> StoreResult<mpsc::UnboundedSender<Queued>> {
        let mut running = self.0.lock().map_err(|_| {
            StoreError::GroupCommit("the group committer's queue is poisoned".into())
        })?;
        match running.as_ref().filter(|queue| !queue.is_closed()) {
            Some(queue) => Ok(queue.clone()),
            None => {
                let (queue, queued) = mpsc::unbounded_channel();
                tokio::spawn(commit_groups(queued));
                *running = Some(queue.clone());
                Ok(queue)
            }
        }
    }
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("account", &self.work.request.account)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Withdraws under the API Idempotency-Key `request.idempotency_key` in `scope`:
    /// `answer` turns the outcome into the response, which is stored with the withdrawal in
    /// one commit. A server error (5xx) rolls the withdrawal back, key included. A claim
    /// without a response older than `stale_after` (left by an earlier release, which
    /// committed its claim before its work) is taken over: the withdrawal beneath is itself
    /// idempotent by its key.
    pub async fn withdraw_keyed(
        &self,
        request: &WithdrawalRequest,
        scope: &str,
        request_hash: &str,
        stale_after: Duration,
        answer: Answerer,
    ) -> StoreResult<Keyed> {
        let work = KeyedWithdrawal {
            request: request.clone(),
            scope: scope.to_owned(),
            request_hash: request_hash.to_owned(),
            stale_after,
            answer,
        };
        if !super::super::GROUP_COMMIT {
            let mut tx = self
                .begin_write(WriteLock::Account(request.account.as_str()))
                .await?;
            let (keyed, keep) = self.keyed_in(&mut tx, work).await?;
            if keep {
                super::commit(tx).await?;
            } else {
                tx.rollback().await?;
            }
            return Ok(keyed);
        }
        let (reply, replied) = oneshot::channel();
        let store = self.clone();
        self.group_commit
            .queue()?
            .send(Queued { store, work, reply })
            .map_err(|_| StoreError::GroupCommit("the group committer has stopped".into()))?;
        replied.await.map_err(|_| {
            StoreError::GroupCommit("the group committer dropped a withdrawal".into())
        })?
    }

    /// One withdrawal under its key in `tx`; says whether what it wrote is to be kept (false
    /// for a server error, whose writes the caller rolls back).
    async fn keyed_in(&self, tx: &mut Tx, work: KeyedWithdrawal) -> StoreResult<(Keyed, bool)> {
        let key = work.request.idempotency_key.as_str();
        let now = to_millis(crate::clock::now());
        let stale_ms = i64::try_from(work.stale_after.as_millis()).unwrap_or(i64::MAX);
        let claimed = sqlx::query(
            "INSERT INTO api_idempotency (scope, idempotency_key, request_hash, started_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, idempotency_key) DO UPDATE SET started_at = excluded.started_at \
             WHERE api_idempotency.status_code IS NULL \
               AND api_idempotency.request_hash = excluded.request_hash \
               AND api_idempotency.started_at < $5",
        )
        .bind(&work.scope)
        .bind(key)
        .bind(&work.request_hash)
        .bind(now)
        .bind(now.saturating_sub(stale_ms))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            let seen = key_seen(tx, &work.scope, key, &work.request_hash).await?;
            return Ok((seen, false));
        }
        let answer = (work.answer)(self.withdraw_in(tx, &work.request).await);
        if answer.is_server_error() {
            return Ok((Keyed::Answered(answer), false));
        }
        sqlx::query(
            "UPDATE api_idempotency SET status_code = $3, response_body = $4, completed_at = $5 \
             WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(&work.scope)
        .bind(key)
        .bind(i64::from(answer.status))
        .bind(&answer.body)
        .bind(to_millis(crate::clock::now()))
        .execute(&mut **tx)
        .await?;
        Ok((Keyed::Answered(answer), true))
    }
}

/// Runs `group` in one transaction, each withdrawal in its own savepoint, and answers each
/// once the transaction has committed.
async fn commit_group(group: Vec<Queued>) {
    let Some(first) = group.first() else {
        return;
    };
    let store = first.store.clone();
    let mut replies = Vec::with_capacity(group.len());
    let outcome: StoreResult<()> = async {
        // SQLite has one writer: which lock a write transaction names does not matter.
        let mut tx = store.begin_write(WriteLock::Run).await?;
        for Queued { store, work, reply } in group {
            sqlx::query("SAVEPOINT withdrawal")
                .execute(&mut *tx)
                .await?;
            let result = store.keyed_in(&mut tx, work).await;
            if !matches!(result, Ok((_, true))) {
                sqlx::query("ROLLBACK TO withdrawal")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("RELEASE withdrawal").execute(&mut *tx).await?;
            replies.push((reply, result.map(|(keyed, _)| keyed)));
        }
        super::commit(tx).await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            for (reply, result) in replies {
                // The caller may have gone (its client hung up): what committed stays,
                // and a retry with the same key replays it.
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "a group commit of withdrawals failed; none of them was made");
            let why = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::GroupCommit(why.clone())));
            }
        }
    }
}

/// The group committer: takes every withdrawal waiting (at most [`GROUP_MAX`]) and commits
/// them together, until the store and its clones are all gone.
async fn commit_groups(mut queued: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = queued.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queued.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(group).await;
    }
}

/// What an already-claimed key holds for the request hashed `request_hash`.
async fn key_seen(tx: &mut Tx, scope: &str, key: &str, request_hash: &str) -> StoreResult<Keyed> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT request_hash, status_code, response_body FROM api_idempotency \
         WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some((hash, _, _)) if hash != request_hash => Keyed::Mismatch,
        Some((_, Some(status), Some(body))) => Keyed::Replay(Answer {
            status: u16::try_from(status).unwrap_or(500),
            body,
        }),
        // Claimed and unanswered by an earlier release's request still running, or the row
        // pruned between the conflict and this read: either way a retry shortly settles it.
        _ => Keyed::InFlight,
    })
}
