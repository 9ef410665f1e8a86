//! Idempotency-Key bookkeeping for the API: the first request with a key claims it, repeats
//! wait for (409) or replay its stored response, and another request under the same key is
//! refused. Each call is one short statement, committed at once, so a claim is visible to
//! every other process before the request's real work starts.

use std::time::Duration;

use chrono::Utc;

use super::{Store, StoreResult, to_millis};
use crate::storage::idempotency_views::IdempotencyBegin;

/// (request_hash, status_code, response_body, started_at)
type KeyRow = (String, Option<i64>, Option<String>, i64);

impl Store {
    /// Claims `key` in `scope` for the request hashed `request_hash`, or says why not. A claim
    /// older than `stale_after` with no response (its request died) is taken over: the work
    /// behind it must itself be idempotent, as withdrawals are by their key.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        stale_after: Duration,
    ) -> StoreResult<IdempotencyBegin> {
        let now = to_millis(Utc::now());
        let inserted = sqlx::query(
            "INSERT INTO api_idempotency (scope, idempotency_key, request_hash, started_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idempotency_key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT request_hash, status_code, response_body, started_at FROM api_idempotency \
             WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some((hash, status, body, started_at)) = row else {
            // Abandoned between our insert and our read: the caller may simply retry.
            return Ok(IdempotencyBegin::InFlight);
        };
        if hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if let (Some(status), Some(body)) = (status, body) {
            return Ok(IdempotencyBegin::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body,
            });
        }
        let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(started_at) < stale_ms {
            return Ok(IdempotencyBegin::InFlight);
        }
        // Take the stale claim over; of several retries doing so at once, one wins.
        let taken = sqlx::query(
            "UPDATE api_idempotency SET started_at = $3 \
             WHERE scope = $1 AND idempotency_key = $2 AND started_at = $4 AND status_code IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .bind(started_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if taken == 1 {
            IdempotencyBegin::Started
        } else {
            IdempotencyBegin::InFlight
        })
    }

    /// Stores the response every repeat of the request will get.
    pub async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_idempotency SET status_code = $3, response_body = $4, completed_at = $5 \
             WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i64::from(status))
        .bind(body)
        .bind(to_millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases a claim whose request failed in a way worth retrying (a server error).
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM api_idempotency \
             WHERE scope = $1 AND idempotency_key = $2 AND status_code IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
