//! Operator actions on one payout: load what the decision needs, let `domain::operator`
//! decide, write the move, its ledger effect, the history line, the action's record and the
//! worker's job, all in one transaction under the payout's lock.

use chrono::Utc;
use sqlx::Row;

use super::ledger::settle_ledger;
use super::payouts::{Actor, append_event};
use super::{Store, StoreError, StoreResult, Tx, WriteLock, enqueue_payout_job, parse_code};
use super::{from_millis, to_millis};
use crate::domain::ids::PayoutId;
use crate::domain::operator::{self, Acted, Action, ActionRequest, AttemptFact, PayoutFacts};
use crate::domain::payout::PayoutStatus;
use crate::domain::step::AttemptOutcome;
use crate::domain::transition::{self, Mover};

impl Store {
    /// Does `request` to payout `id` if its safety rules allow it (`domain::operator`), as
    /// one transaction. The same action asked again while nothing changed since is answered
    /// with the first one's record (`replayed`), not done twice.
    pub async fn operator_act(&self, id: &PayoutId, request: &ActionRequest) -> StoreResult<Acted> {
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        let facts = load_facts(&mut tx, id).await?;
        if let Some(done) = already_done(&mut tx, id, &request.action, facts.status).await? {
            return Ok(done);
        }
        let effect = operator::decide(&request.action, &facts, &request.reason)?;
        transition::check(facts.status, effect.to, Mover::Operator)?;
        let now = Utc::now();
        sqlx::query(
            "UPDATE payouts SET status = $2, updated_at = $3, \
               next_action_at = CASE WHEN $4 THEN $3 ELSE next_action_at END, \
               attempt_base = CASE WHEN $5 THEN attempts ELSE attempt_base END \
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(effect.to.code())
        .bind(to_millis(now))
        .bind(effect.run_now)
        .bind(effect.fresh_attempts)
        .execute(&mut *tx)
        .await?;
        if effect.to != facts.status {
            let hold: String = sqlx::query_scalar("SELECT hold_txn_id FROM payouts WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            settle_ledger(&mut tx, id, &hold, effect.ledger).await?;
        }
        let actor = Actor {
            worker: Some(&request.actor),
            source: "operator",
        };
        let line = format!(
            "{} by {}: {}",
            effect.summary, request.actor, request.reason
        );
        append_event(
            &mut tx,
            id,
            Some(facts.status),
            effect.to,
            None,
            actor,
            &line,
        )
        .await?;
        let action_id = format!("oa_{}", ulid::Ulid::generate());
        record_action(&mut tx, &action_id, id, request, facts.status, effect.to).await?;
        if effect.run_now {
            let key = format!("operator-{action_id}");
            enqueue_payout_job(&mut tx, id, std::time::Duration::ZERO, &key).await?;
        }
        tx.commit().await?;
        Ok(Acted {
            action_id,
            payout_id: id.to_string(),
            action: request.action.code().to_string(),
            from: facts.status,
            to: effect.to,
            summary: line,
            replayed: false,
        })
    }
}

/// The payout as the decision needs it: status, the payment it rests on, every attempt's
/// outcome, a cooling-off hold, a worker's lease.
async fn load_facts(tx: &mut Tx, id: &PayoutId) -> StoreResult<PayoutFacts> {
    let row = sqlx::query(
        "SELECT status, provider_ref, next_action_at, lease_expires_at FROM payouts WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
    let status: String = row.try_get(0)?;
    let status = parse_code("payout status", &status, PayoutStatus::from_code)?;
    let next_action_at: Option<i64> = row.try_get(2)?;
    let lease_expires_at: Option<i64> = row.try_get(3)?;
    let now = to_millis(Utc::now());
    let attempts: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT attempt_no, outcome FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    Ok(PayoutFacts {
        status,
        provider_ref: row.try_get(1)?,
        attempts: attempts
            .into_iter()
            .map(|(no, outcome)| AttemptFact {
                attempt: u32::try_from(no).unwrap_or(u32::MAX),
                outcome: outcome.as_deref().and_then(AttemptOutcome::from_code),
            })
            .collect(),
        held_until: next_action_at
            .filter(|at| status == PayoutStatus::Queued && *at > now)
            .map(from_millis),
        leased: lease_expires_at.is_some_and(|until| until > now),
    })
}

/// The last action done on the payout, if it is this same action and the payout is still
/// where it left it.
async fn already_done(
    tx: &mut Tx,
    id: &PayoutId,
    action: &Action,
    status: PayoutStatus,
) -> StoreResult<Option<Acted>> {
    let last: Option<(String, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT id, action, reference, from_status, to_status FROM operator_actions \
         WHERE payout_id = $1 AND state = 'done' ORDER BY requested_at DESC, id DESC LIMIT 1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((action_id, code, reference, from, to)) = last else {
        return Ok(None);
    };
    let same_reference = match action {
        Action::MarkPaid { reference: wanted } => reference.as_deref() == Some(wanted.as_str()),
        _ => true,
    };
    if code != action.code() || !same_reference || to != status.code() {
        return Ok(None);
    }
    let event: Option<String> = sqlx::query_scalar(
        "SELECT reason FROM payout_events WHERE payout_id = $1 AND source = 'operator' \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(Some(Acted {
        action_id,
        payout_id: id.to_string(),
        action: code,
        from: parse_code("payout status", &from, PayoutStatus::from_code)?,
        to: status,
        summary: event.unwrap_or_default(),
        replayed: true,
    }))
}

async fn record_action(
    tx: &mut Tx,
    action_id: &str,
    id: &PayoutId,
    request: &ActionRequest,
    from: PayoutStatus,
    to: PayoutStatus,
) -> StoreResult<()> {
    let reference = match &request.action {
        Action::MarkPaid { reference } => Some(reference.as_str()),
        _ => None,
    };
    let now = to_millis(Utc::now());
    sqlx::query(
        "INSERT INTO operator_actions (id, payout_id, action, reference, reason, requested_by, \
           requested_at, state, decided_by, decided_at, from_status, to_status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'done', $6, $7, $8, $9)",
    )
    .bind(action_id)
    .bind(id.as_str())
    .bind(request.action.code())
    .bind(reference)
    .bind(&request.reason)
    .bind(&request.actor)
    .bind(now)
    .bind(from.code())
    .bind(to.code())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
