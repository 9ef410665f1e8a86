//! Idempotency-Keys of the API's withdrawals. The key's claim, the withdrawal and the
//! response it gets commit in one transaction under the account's write lock, so a repeat
//! waits for that commit and then replays the stored response, a crash leaves nothing behind,
//! and a withdrawal costs one commit.

use std::time::Duration;

use chrono::Utc;

use super::{Store, StoreResult, Tx, WriteLock, to_millis};
use crate::storage::idempotency_views::{Answer, Keyed};
use crate::storage::payout_views::{WithdrawError, WithdrawalOutcome, WithdrawalRequest};

/// (request_hash, status_code, response_body)
type KeyRow = (String, Option<i64>, Option<String>);

impl Store {
    /// Withdraws under the API Idempotency-Key `request.idempotency_key` in `scope`:
    /// `answer` turns the outcome into the response, which is stored with the withdrawal in
    /// one commit. A server error (5xx) rolls everything back, key included. A claim without
    /// a response older than `stale_after` (left by an earlier release, which committed its
    /// claim before its work) is taken over: the withdrawal beneath is itself idempotent by
    /// its key.
    pub async fn withdraw_keyed(
        &self,
        request: &WithdrawalRequest,
        scope: &str,
        request_hash: &str,
        stale_after: Duration,
        answer: impl FnOnce(Result<WithdrawalOutcome, WithdrawError>) -> Answer,
    ) -> StoreResult<Keyed> {
        let key = request.idempotency_key.as_str();
        let mut tx = self
            .begin_write(WriteLock::Account(request.account.as_str()))
            .await?;
        let now = to_millis(Utc::now());
        let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let claimed = sqlx::query(
            "INSERT INTO api_idempotency (scope, idempotency_key, request_hash, started_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, idempotency_key) DO UPDATE SET started_at = excluded.started_at \
             WHERE api_idempotency.status_code IS NULL \
               AND api_idempotency.request_hash = excluded.request_hash \
               AND api_idempotency.started_at < $5",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now.saturating_sub(stale_ms))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            let seen = key_seen(&mut tx, scope, key, request_hash).await?;
            tx.rollback().await?;
            return Ok(seen);
        }
        let answer = answer(self.withdraw_in(&mut tx, request).await);
        if answer.is_server_error() {
            tx.rollback().await?;
            return Ok(Keyed::Answered(answer));
        }
        sqlx::query(
            "UPDATE api_idempotency SET status_code = $3, response_body = $4, completed_at = $5 \
             WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i64::from(answer.status))
        .bind(&answer.body)
        .bind(to_millis(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Keyed::Answered(answer))
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
        // Claimed and unanswered, or (the conflict seen, then the row gone) released
        // meanwhile: either way the caller may retry shortly.
        _ => Keyed::InFlight,
    })
}
