//! The operator console's overview queries: money paid per rail per day, and the payouts
//! waiting for a human. Read-only, one set-based statement each, the same text on both
//! backends.

use chrono::{DateTime, Utc};

use super::{Store, StoreResult, from_millis, parse_code, parse_stored, to_millis};
use crate::domain::ids::Rail;
use crate::domain::money::Money;
use crate::domain::payout::PayoutStatus;
use crate::storage::console_views::{Attention, AttentionReason, PaidDay};
use crate::storage::sums::{join, wide_sum};

/// Most payouts the attention list shows: a console page, not an export.
const ATTENTION_LIMIT: i64 = 500;

type AttentionRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    i64,
);

impl Store {
    /// Whether the database's key `key_id` exists and is not revoked: a console session ends
    /// when its key is revoked.
    pub async fn api_key_live(&self, key_id: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Money paid per rail, currency and UTC day since `since`, each payout counted on the
    /// day it was first paid. Summed exactly (`storage::sums`): a busy day can pass what one
    /// stored amount holds.
    pub async fn paid_per_rail_per_day(&self, since: DateTime<Utc>) -> StoreResult<Vec<PaidDay>> {
        let rows: Vec<(i64, String, String, i64, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(f.paid_at / 86400000 AS BIGINT) AS day, p.rail, p.currency, {} \
                 FROM payouts p \
                 JOIN (SELECT payout_id, MIN(at) AS paid_at FROM payout_events \
                       WHERE to_status = 'paid' GROUP BY payout_id) f ON f.payout_id = p.id \
                 WHERE p.status = 'paid' AND f.paid_at >= $1 \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                wide_sum("p.units")
            )))
            .bind(to_millis(since))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(day, rail, currency, high, low)| {
                let currency = parse_stored("currency", &currency)?;
                Ok(PaidDay {
                    day: from_millis(day.saturating_mul(86_400_000)).date_naive(),
                    rail: parse_stored("rail", &rail)?,
                    amount: Money::from_total_units(join(high, low), currency)?,
                })
            })
            .collect()
    }

    /// Attempts per rail and outcome class since `since` that did not land (retry,
    /// throttled, unknown, permanent, interrupted, or still in flight), most first: what a
    /// rail has been answering lately.
    pub async fn recent_attempt_errors(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(Rail, String, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT p.rail, a.outcome, COUNT(*) FROM payout_attempts a \
             JOIN payouts p ON p.id = a.payout_id \
             WHERE a.started_at >= $1 AND a.outcome <> 'landed' \
             GROUP BY p.rail, a.outcome ORDER BY 3 DESC, 1, 2",
        )
        .bind(to_millis(since))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(rail, outcome, n)| Ok((parse_stored("rail", &rail)?, outcome, n)))
            .collect()
    }

    /// Payouts waiting for a person (an approval, a dispute, an operator's decision, a
    /// cooling-off hold), oldest first.
    pub async fn needing_attention(&self) -> StoreResult<Vec<Attention>> {
        let now = to_millis(crate::clock::now());
        let rows: Vec<AttentionRow> = sqlx::query_as(
            "SELECT p.id, p.account_id, p.rail, p.currency, CAST(p.units AS BIGINT), p.status, \
               p.provider_state, p.next_action_at, p.created_at, p.last_error, \
               CAST(CASE WHEN EXISTS (SELECT 1 FROM operator_actions a WHERE a.payout_id = p.id \
                 AND a.state = 'pending_approval') THEN 1 ELSE 0 END AS BIGINT) \
             FROM payouts p \
             WHERE p.status IN ('needs_operator', 'held') \
                OR (p.status = 'queued' AND p.next_action_at > $1) \
                OR EXISTS (SELECT 1 FROM operator_actions a WHERE a.payout_id = p.id \
                   AND a.state = 'pending_approval') \
             ORDER BY p.created_at, p.id LIMIT $2",
        )
        .bind(now)
        .bind(ATTENTION_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(attention).collect()
    }
}

fn attention(row: AttentionRow) -> StoreResult<Attention> {
    let (id, account, rail, currency, units, status, provider_state, next, created, error, pending) =
        row;
    let status = parse_code("payout status", &status, PayoutStatus::from_code)?;
    let reason = if pending != 0 {
        AttentionReason::PendingApproval
    } else if status == PayoutStatus::NeedsOperator && provider_state.as_deref() == Some("disputed")
    {
        AttentionReason::Disputed
    } else if status == PayoutStatus::NeedsOperator {
        AttentionReason::NeedsOperator
    } else if status == PayoutStatus::Held {
        AttentionReason::Review
    } else {
        AttentionReason::CoolingOff
    };
    let note = match (reason, next) {
        (AttentionReason::CoolingOff, Some(at)) => Some(format!(
            "held until {}",
            from_millis(at).format("%Y-%m-%d %H:%M UTC")
        )),
        _ => error,
    };
    Ok(Attention {
        reason,
        payout: parse_stored("payout id", &id)?,
        account: parse_stored("account id", &account)?,
        rail: parse_stored("rail", &rail)?,
        amount: Money::from_units(units, parse_stored("currency", &currency)?),
        status,
        created_at: from_millis(created),
        note,
    })
}
