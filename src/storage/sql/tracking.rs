//! Status tracking writes: the attempts a rail needs to resolve an uncertain payout, its
//! in-attempt checkpoints, observations from webhooks (which hold no lease), and the record of
//! webhook deliveries.

pub(crate) use crate::storage::tracking_views::*;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Tx;
use super::enqueue_payout_job;
use super::ledger::settle_ledger;
use super::payouts::{Actor, Lease, PayoutView, append_event, fetch_payout};
use super::{Store, StoreError, StoreResult, WriteLock, from_millis, parse_stored, to_millis};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::object_match::{
    Anchor, AttemptTokens, Evidence, ObjectMatch, Reading, match_reading,
};
use crate::domain::payout::PayoutStatus;
use crate::domain::step::PastAttempt;
use crate::domain::step::stored_outcome_uses_an_attempt;
use crate::domain::tracking::{LedgerEffect, Observation, Tracked, track, worth_noting};
use crate::domain::transition::{self, Mover};

/// attempt_no, provider_key, started_at, provider_ref, checkpoint.
type AttemptRow = (i64, String, i64, Option<String>, Option<String>);

impl Store {
    /// Every attempt of a payout, oldest first.
    pub async fn past_attempts(&self, id: &PayoutId) -> StoreResult<Vec<PastAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT attempt_no, provider_key, started_at, provider_ref, checkpoint \
             FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(n, key, started, provider_ref, checkpoint)| {
                Ok(PastAttempt {
                    attempt: u32::try_from(n).unwrap_or(u32::MAX),
                    idempotency_key: key,
                    started_at: from_millis(started),
                    provider_ref,
                    checkpoint: checkpoint
                        .map(|c| {
                            serde_json::from_str(&c).map_err(|e| {
                                StoreError::Corrupt(format!("checkpoint of attempt {n}: {e}"))
                            })
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Attempts that used up one of the payout's `max_attempts` (see
    /// [`stored_outcome_uses_an_attempt`]): a send still marked in flight was cut off and
    /// does not count.
    pub async fn attempts_used(&self, id: &PayoutId) -> StoreResult<u32> {
        let outcomes: Vec<String> =
            // Attempts before an operator's retry no longer count (`attempt_base`).
            sqlx::query_scalar(
                "SELECT a.outcome FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id \
                 WHERE a.payout_id = $1 AND a.attempt_no > p.attempt_base",
            )
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let used = outcomes
            .iter()
            .filter(|o| stored_outcome_uses_an_attempt(o))
            .count();
        Ok(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Saves progress inside attempt `attempt`, fenced by the lease like every step write.
    pub async fn save_checkpoint(
        &self,
        lease: &Lease,
        attempt: u32,
        state: &Value,
    ) -> StoreResult<()> {
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        // The rail's next call follows this write: prove (and renew) the lease first.
        super::steps::prove_lease(&mut tx, lease).await?;
        let done = sqlx::query(
            "UPDATE payout_attempts SET checkpoint = $1 \
             WHERE payout_id = $2 AND attempt_no = $3 \
               AND EXISTS (SELECT 1 FROM payouts WHERE id = $2 AND fence = $4 AND lease_owner = $5)",
        )
        .bind(state.to_string())
        .bind(lease.payout_id.as_str())
        .bind(i64::from(attempt))
        .bind(lease.fence)
        .bind(&lease.owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::LeaseLost {
                payout: lease.payout_id.to_string(),
                fence: lease.fence,
            });
        }
        super::commit(tx).await?;
        Ok(())
    }

    /// The payout a provider event is about: by the provider's id for the payment, or by our
    /// own token echoed back (an attempt key, or the payout id itself).
    pub async fn payout_for_event(
        &self,
        rail: Rail,
        provider_ref: Option<&str>,
        our_token: Option<&str>,
    ) -> StoreResult<Option<PayoutId>> {
        // The payout whose own payment it is comes first; whether the event may change it is
        // decided when it is applied (`domain::object_match`).
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM ( \
               SELECT id, 0 AS rank FROM payouts WHERE rail = $1 AND provider_ref = $2 \
               UNION ALL SELECT a.payout_id, 1 FROM payout_attempts a \
                 JOIN payouts p ON p.id = a.payout_id \
                 WHERE p.rail = $1 AND (a.provider_ref = $2 OR a.provider_key = $3) \
               UNION ALL SELECT id, 2 FROM payouts WHERE rail = $1 AND id = $3) m \
             ORDER BY rank LIMIT 1",
        )
        .bind(rail.as_str())
        .bind(provider_ref)
        .bind(our_token)
        .fetch_optional(&self.pool)
        .await?;
        found.map(|id| parse_stored("payout id", &id)).transpose()
    }

    /// Applies a provider observation that arrived outside a worker step (a webhook): moves
    /// the payout per `domain::tracking::track` and settles the ledger in one transaction.
    /// Takes over any lease (the fence moves), so a worker mid-poll cannot overwrite it.
    /// A payout this makes paid is watched for `watch_for` (see `RetryPolicy::watch_for`).
    ///
    /// Only a reading about the object the payout rests on is applied
    /// (`domain::object_match`); a reading about another object that names the payout is
    /// recorded as duplicate evidence and changes neither the payout nor the ledger.
    pub async fn apply_observation(
        &self,
        id: &PayoutId,
        reading: Reading<'_>,
        observation: &Observation,
        source: &str,
        watch_for: Option<std::time::Duration>,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        let payout = fetch_payout(&mut tx, id.as_str())
            .await?
            .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
        let status = payout.status;
        // A payout waiting for an operator still records what the provider says (track
        // leaves its status alone), so the operator decides with it.
        let tracked_states = [
            PayoutStatus::Processing,
            PayoutStatus::Paid,
            PayoutStatus::Failed,
            PayoutStatus::Returned,
            PayoutStatus::NeedsOperator,
        ];
        if !tracked_states.contains(&status) {
            // Being sent or resolved: the worker's own lookup will see this state (and tell
            // its own payment from any other).
            if status.is_active() {
                enqueue_payout_job(
                    &mut tx,
                    id,
                    std::time::Duration::ZERO,
                    &format!("{source}-{}", to_millis(crate::clock::now())),
                )
                .await?;
            }
            super::commit(tx).await?;
            return Ok(Applied::Deferred { status });
        }
        let attempts = attempt_tokens(&mut tx, id).await?;
        let anchor = Anchor {
            payout_id: id.as_str(),
            provider_ref: payout.provider_ref.as_deref(),
            attempts: &attempts,
        };
        let actor = Actor {
            worker: None,
            source,
        };
        let applied = match match_reading(&anchor, &reading) {
            ObjectMatch::Applies => {
                let watch_until = watch_for.map(|w| {
                    to_millis(crate::clock::now())
                        + i64::try_from(w.as_millis()).unwrap_or(i64::MAX / 4)
                });
                apply_tracked(&mut tx, &payout, observation, actor, watch_until).await?
            }
            ObjectMatch::Duplicate(evidence) => {
                record_duplicate(&mut tx, &payout, &evidence, observation, actor).await?;
                Applied::Duplicate {
                    status,
                    object: evidence.object,
                }
            }
            // Found by a name this payout does not carry: nothing of ours to change.
            ObjectMatch::Unrelated => Applied::Unchanged { status },
        };
        super::commit(tx).await?;
        Ok(applied)
    }

    /// Provider objects that named a payout (or any payout) but were not its payment, newest
    /// first: what an operator checks for duplicate payments.
    pub async fn payout_duplicates(
        &self,
        id: Option<&PayoutId>,
    ) -> StoreResult<Vec<DuplicateEvidence>> {
        let rows: Vec<DuplicateRow> = sqlx::query_as(
            "SELECT payout_id, rail, object_ref, state, provider_status, source, \
               first_seen_at, last_seen_at, booking \
             FROM payout_duplicates WHERE CAST($1 AS TEXT) IS NULL OR payout_id = $1 \
             ORDER BY first_seen_at DESC, payout_id, object_ref",
        )
        .bind(id.map(PayoutId::as_str))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DuplicateEvidence {
                payout_id: r.0,
                rail: r.1,
                object_ref: r.2,
                state: r.3,
                provider_status: r.4,
                source: r.5,
                first_seen_at: from_millis(r.6),
                last_seen_at: from_millis(r.7),
                booked: r.8,
            })
            .collect())
    }

    /// Records a webhook delivery once. False if this event was already received.
    pub async fn record_delivery(
        &self,
        provider: Rail,
        event_id: &str,
        payout: Option<&PayoutId>,
        outcome: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (provider, event_id, received_at, payout_id, outcome) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(provider.as_str())
        .bind(event_id)
        .bind(to_millis(crate::clock::now()))
        .bind(payout.map(PayoutId::as_str))
        .bind(outcome)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a webhook event was already received.
    pub async fn delivery_seen(&self, provider: Rail, event_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE provider = $1 AND event_id = $2",
        )
        .bind(provider.as_str())
        .bind(event_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}

/// Writes a tracked status and takes over any lease: the fence moves, so a worker that was
/// polling this payout finds its lease lost instead of overwriting a newer state.
async fn write_status(
    tx: &mut Tx,
    id: &PayoutId,
    to: PayoutStatus,
    observation: &Observation,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    watch_until: Option<i64>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE payouts SET status = $1, provider_status = $2, provider_state = $7, \
           provider_status_at = CASE WHEN $3 IS NOT NULL AND \
             (provider_status_at IS NULL OR $3 > provider_status_at) \
             THEN $3 ELSE provider_status_at END, \
           fence = fence + 1, lease_owner = NULL, lease_expires_at = NULL, \
           watch_until = CASE WHEN $1 = 'paid' AND status <> 'paid' THEN $6 ELSE watch_until END, \
           next_action_at = CASE WHEN $1 = 'processing' THEN next_action_at \
             WHEN $1 = 'paid' AND status = 'processing' AND $6 IS NOT NULL THEN next_action_at \
             WHEN $1 = 'paid' AND status = 'paid' THEN next_action_at \
             ELSE NULL END, \
           updated_at = $4 \
         WHERE id = $5",
    )
    .bind(to.code())
    .bind(&observation.provider_status)
    .bind(at.map(to_millis))
    .bind(to_millis(now))
    .bind(id.as_str())
    .bind(watch_until)
    .bind(observation.state.code())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// payout_id, rail, object_ref, state, provider_status, source, first_seen_at, last_seen_at.
type DuplicateRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
);

/// What every attempt of a payout is known by, oldest first.
async fn attempt_tokens(tx: &mut Tx, id: &PayoutId) -> StoreResult<Vec<AttemptTokens>> {
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT provider_key, rail_ref, provider_ref FROM payout_attempts \
         WHERE payout_id = $1 ORDER BY attempt_no",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, rail_ref, provider_ref)| AttemptTokens {
            key,
            rail_ref,
            provider_ref,
        })
        .collect())
}

/// Applies a reading about the payout's own payment per `domain::tracking::track`.
async fn apply_tracked(
    tx: &mut Tx,
    payout: &PayoutView,
    observation: &Observation,
    actor: Actor<'_>,
    watch_until: Option<i64>,
) -> StoreResult<Applied> {
    let (id, status) = (&payout.id, payout.status);
    let now = crate::clock::now();
    let at = observation.occurred_at;
    Ok(
        match track(status, payout.provider_status_at, observation) {
            Tracked::Unchanged => {
                let last = payout.provider_status.as_deref();
                if worth_noting(last, payout.provider_status_at, observation) {
                    write_status(tx, id, status, observation, at, now, watch_until).await?;
                    append_event(
                        tx,
                        id,
                        Some(status),
                        status,
                        None,
                        actor,
                        &format!("provider status now {}", observation.describe()),
                    )
                    .await?;
                }
                Applied::Unchanged { status }
            }
            Tracked::Move { to, ledger, reason } => {
                transition::check(status, to, Mover::Provider)?;
                write_status(tx, id, to, observation, at, now, watch_until).await?;
                let hold = hold_of(tx, id).await?;
                settle_ledger(tx, id, &hold, ledger).await?;
                append_event(tx, id, Some(status), to, None, actor, &reason).await?;
                Applied::Moved { from: status, to }
            }
            Tracked::Conflict { reason } => {
                let to = PayoutStatus::NeedsOperator;
                transition::check(status, to, Mover::Provider)?;
                write_status(tx, id, to, observation, at, now, watch_until).await?;
                // The money left after all: take it out of the balance again at once, so it
                // cannot be withdrawn a second time while an operator looks.
                let hold = hold_of(tx, id).await?;
                settle_ledger(tx, id, &hold, LedgerEffect::Correct).await?;
                sqlx::query("UPDATE payouts SET last_error = $1 WHERE id = $2")
                    .bind(&reason)
                    .bind(id.as_str())
                    .execute(&mut **tx)
                    .await?;
                append_event(tx, id, Some(status), to, None, actor, &reason).await?;
                Applied::Moved { from: status, to }
            }
        },
    )
}

async fn hold_of(tx: &mut Tx, id: &PayoutId) -> StoreResult<String> {
    Ok(
        sqlx::query_scalar("SELECT hold_txn_id FROM payouts WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Keeps a reading about another object that names the payout, once per object, and says so
/// on the payout (its status unchanged) whenever the object is new or its state changed.
/// Reconciliation reports every row as `duplicate_at_provider`.
async fn record_duplicate(
    tx: &mut Tx,
    payout: &PayoutView,
    evidence: &Evidence,
    observation: &Observation,
    actor: Actor<'_>,
) -> StoreResult<()> {
    let now = to_millis(crate::clock::now());
    let before: Option<String> = sqlx::query_scalar(
        "SELECT provider_status FROM payout_duplicates WHERE payout_id = $1 AND object_ref = $2",
    )
    .bind(payout.id.as_str())
    .bind(&evidence.object)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO payout_duplicates (payout_id, rail, object_ref, state, provider_status, \
           source, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (payout_id, object_ref) DO UPDATE SET state = excluded.state, \
           provider_status = excluded.provider_status, last_seen_at = excluded.last_seen_at",
    )
    .bind(payout.id.as_str())
    .bind(payout.rail.as_str())
    .bind(&evidence.object)
    .bind(observation.state.code())
    .bind(&observation.provider_status)
    .bind(actor.source)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if before.as_deref() != Some(observation.provider_status.as_str()) {
        let status = payout.status;
        let reason = evidence.reason(&observation.describe());
        append_event(tx, &payout.id, Some(status), status, None, actor, &reason).await?;
    }
    Ok(())
}
