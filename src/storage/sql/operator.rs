//! Operator actions on one payout: load what the decision needs, let `domain::operator`
//! decide, write the move, its ledger effect, the history line, the action's record and the
//! worker's job, all in one transaction under the payout's lock. Also pausing and resuming a
//! rail, and a step's wait for a paused one.

use chrono::Utc;
use sqlx::Row;

use super::ledger::settle_ledger;
use super::payouts::{Actor, append_event};
use super::steps::fenced_update;
use super::{Store, StoreError, StoreResult, Tx, WriteLock, enqueue_payout_job, parse_code};
use super::{from_millis, parse_stored, to_millis};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::operator::{
    self, Acted, Action, ActionRequest, AttemptFact, PAUSE_RECHECK, PayoutFacts, RailPause, Refusal,
};
use crate::domain::payout::PayoutStatus;
use crate::domain::step::AttemptOutcome;
use crate::domain::transition::{self, Mover};
use crate::storage::payouts::Lease;

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

impl Store {
    /// Pauses `rail`; pausing a paused rail changes nothing and returns the live pause.
    /// Returns the pause and whether this call made it.
    pub async fn pause_rail(
        &self,
        rail: Rail,
        reason: &str,
        actor: &str,
    ) -> StoreResult<(RailPause, bool)> {
        if reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        if let Some(live) = live_pause(&mut tx, rail).await? {
            return Ok((live, false));
        }
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO rail_pauses (id, rail, reason, paused_by, paused_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(format!("rp_{}", ulid::Ulid::generate()))
        .bind(rail.as_str())
        .bind(reason)
        .bind(actor)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let pause = RailPause {
            rail,
            reason: reason.to_string(),
            paused_by: actor.to_string(),
            paused_at: from_millis(to_millis(now)),
        };
        Ok((pause, true))
    }

    /// Resumes `rail` and wakes the payouts that waited for it; `None` when it was not
    /// paused.
    pub async fn resume_rail(
        &self,
        rail: Rail,
        reason: &str,
        actor: &str,
    ) -> StoreResult<Option<RailPause>> {
        if reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        let Some(live) = live_pause(&mut tx, rail).await? else {
            return Ok(None);
        };
        let now = to_millis(Utc::now());
        sqlx::query(
            "UPDATE rail_pauses SET resumed_at = $2, resumed_by = $3, resume_reason = $4 \
             WHERE rail = $1 AND resumed_at IS NULL",
        )
        .bind(rail.as_str())
        .bind(now)
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        // Payouts that waited for the rail look again now rather than at their next recheck.
        let recheck = i64::try_from(PAUSE_RECHECK.as_millis()).unwrap_or(i64::MAX / 4);
        let waiting: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payouts WHERE rail = $1 \
               AND status IN ('queued', 'retry_scheduled') AND lease_expires_at IS NULL \
               AND next_action_at > $2 AND next_action_at <= $3",
        )
        .bind(rail.as_str())
        .bind(now)
        .bind(now + recheck)
        .fetch_all(&mut *tx)
        .await?;
        for id in waiting {
            let id: PayoutId = parse_stored("payout id", &id)?;
            sqlx::query("UPDATE payouts SET next_action_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let key = format!("resume-{}-{now}", rail.as_str());
            enqueue_payout_job(&mut tx, &id, std::time::Duration::ZERO, &key).await?;
        }
        tx.commit().await?;
        Ok(Some(live))
    }

    /// The rails paused now.
    pub async fn rail_pauses(&self) -> StoreResult<Vec<RailPause>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT rail, reason, paused_by, paused_at FROM rail_pauses \
             WHERE resumed_at IS NULL ORDER BY rail",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(pause_row).collect()
    }

    /// Whether `rail` is paused now.
    pub async fn rail_pause(&self, rail: Rail) -> StoreResult<Option<RailPause>> {
        Ok(self
            .rail_pauses()
            .await?
            .into_iter()
            .find(|p| p.rail == rail))
    }

    /// A step that found its rail paused: the payout waits, with the pause on its record
    /// once, and looks again after [`PAUSE_RECHECK`].
    pub async fn wait_for_rail(
        &self,
        lease: &Lease,
        status: PayoutStatus,
        pause: &RailPause,
    ) -> StoreResult<()> {
        let mut tx = self
            .begin_write(WriteLock::Payout(lease.payout_id.as_str()))
            .await?;
        let now = to_millis(Utc::now());
        let recheck = i64::try_from(PAUSE_RECHECK.as_millis()).unwrap_or(i64::MAX / 4);
        fenced_update(
            &mut tx,
            lease,
            "lease_owner = NULL, lease_expires_at = NULL, next_action_at = $3, updated_at = $4",
            now + recheck,
            now,
        )
        .await?;
        let note = pause.note();
        let last: Option<String> = sqlx::query_scalar(
            "SELECT reason FROM payout_events WHERE payout_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(lease.payout_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if last.as_deref() != Some(note.as_str()) {
            let actor = Actor {
                worker: Some(&lease.owner),
                source: "worker",
            };
            append_event(
                &mut tx,
                &lease.payout_id,
                Some(status),
                status,
                None,
                actor,
                &note,
            )
            .await?;
        }
        let key = format!("fence-{}-rail-paused", lease.fence);
        enqueue_payout_job(&mut tx, &lease.payout_id, PAUSE_RECHECK, &key).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn live_pause(tx: &mut Tx, rail: Rail) -> StoreResult<Option<RailPause>> {
    let row: Option<(String, String, String, i64)> = sqlx::query_as(
        "SELECT rail, reason, paused_by, paused_at FROM rail_pauses \
         WHERE rail = $1 AND resumed_at IS NULL",
    )
    .bind(rail.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(pause_row).transpose()
}

fn pause_row(
    (rail, reason, paused_by, paused_at): (String, String, String, i64),
) -> StoreResult<RailPause> {
    Ok(RailPause {
        rail: parse_stored("rail", &rail)?,
        reason,
        paused_by,
        paused_at: from_millis(paused_at),
    })
}
