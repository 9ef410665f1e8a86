//! Operator actions on one payout: load what the decision needs, let `domain::operator`
//! decide, write the move, its ledger effect, the history line, the action's record and the
//! worker's job, all in one transaction under the payout's lock; four eyes above the
//! configured amount; the dry run and the filter of bulk actions.

use sqlx::Row;

use super::duplicates::{load_duplicates, settle_duplicate};
use super::ledger::{book_duplicate, book_part_return, settle_ledger};
use super::payouts::{Actor, append_event};
use super::{Store, StoreError, StoreResult, Tx, WriteLock, enqueue_payout_job, parse_code};
use super::{from_millis, parse_stored, to_millis};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::money::Money;
use crate::domain::operator::{
    self, Acted, Action, ActionRequest, ActionState, AttemptFact, Booking, DisputeOutcome,
    DuplicateBooking, Effect, PayoutFacts, PayoutFilter, PendingApproval, Refusal,
};
use crate::domain::payout::PayoutStatus;
use crate::domain::step::AttemptOutcome;
use crate::domain::transition::{self, Mover};

impl Store {
    /// Does `request` to payout `id` if its safety rules allow it (`domain::operator`), as
    /// one transaction; above the four-eyes amount it is recorded as pending approval and
    /// nothing else changes. The same action asked again while nothing changed since is
    /// answered with the first one's record (`replayed`), not done twice.
    pub async fn operator_act(&self, id: &PayoutId, request: &ActionRequest) -> StoreResult<Acted> {
        self.operator_try(id, request, true).await
    }

    /// What [`Self::operator_act`] would do, done in a transaction that is then rolled back:
    /// the dry run of a bulk action.
    pub async fn operator_preview(
        &self,
        id: &PayoutId,
        request: &ActionRequest,
    ) -> StoreResult<Acted> {
        self.operator_try(id, request, false).await
    }

    /// Payouts matching `filter`, oldest first, at most `limit`.
    pub async fn payouts_matching(
        &self,
        filter: &PayoutFilter,
        limit: u32,
    ) -> StoreResult<Vec<PayoutId>> {
        let before = filter.older_than.map(|age| {
            to_millis(crate::clock::now()) - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 4)
        });
        let reason = filter
            .reason
            .as_ref()
            .map(|r| format!("%{}%", r.to_lowercase()));
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payouts \
             WHERE ($1 IS NULL OR rail = $1) AND ($2 IS NULL OR status = $2) \
               AND ($3 IS NULL OR lower(COALESCE(last_error, '')) LIKE $3) \
               AND ($4 IS NULL OR created_at <= $4) AND ($5 IS NULL OR account_id = $5) \
             ORDER BY created_at, id LIMIT $6",
        )
        .bind(filter.rail.map(Rail::as_str))
        .bind(filter.status.map(PayoutStatus::code))
        .bind(reason)
        .bind(before)
        .bind(filter.account.as_ref().map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| parse_stored("payout id", id)).collect()
    }

    async fn operator_try(
        &self,
        id: &PayoutId,
        request: &ActionRequest,
        commit: bool,
    ) -> StoreResult<Acted> {
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        let facts = load_facts(&mut tx, id).await?;
        if let Some(done) = already_asked(&mut tx, id, &request.action, facts.status).await? {
            return Ok(done);
        }
        let effect = operator::decide(&request.action, &facts, &request.reason)?;
        let above = self.safeguards().four_eyes_above;
        if operator::needs_approval(&request.action, &facts.amount, above) {
            let action_id = new_action_id();
            let state = ActionState::PendingApproval;
            record_action(&mut tx, &action_id, id, request, facts.status, None, state).await?;
            if commit {
                super::commit(tx).await?;
            }
            return Ok(Acted {
                action_id,
                state,
                payout_id: id.to_string(),
                action: request.action.code().to_string(),
                from: facts.status,
                to: facts.status,
                summary: format!(
                    "{} waits for a second operator's approval (above the four-eyes amount)",
                    request.action
                ),
                replayed: false,
            });
        }
        let action_id = new_action_id();
        let acted = execute(&mut tx, id, &action_id, request, &facts, &effect, None).await?;
        if commit {
            super::commit(tx).await?;
        }
        Ok(acted)
    }

    /// A second operator approves a pending action: it is decided again on the payout as it
    /// is now (it may have moved meanwhile) and done, or refused.
    pub async fn approve_action(&self, action_id: &str, approver: &str) -> StoreResult<Acted> {
        let pending = pending_action(self, action_id).await?;
        operator::check_second_operator(&pending.request.actor, approver)?;
        let id = pending.payout;
        let mut tx = self.begin_write(WriteLock::Payout(id.as_str())).await?;
        let state = action_state(&mut tx, action_id).await?;
        if state != ActionState::PendingApproval {
            return Err(not_pending(action_id, state));
        }
        let facts = load_facts(&mut tx, &id).await?;
        let effect = operator::decide(&pending.request.action, &facts, &pending.request.reason)?;
        let request = &pending.request;
        let acted = execute(
            &mut tx,
            &id,
            action_id,
            request,
            &facts,
            &effect,
            Some(approver),
        )
        .await?;
        super::commit(tx).await?;
        Ok(acted)
    }

    /// A second operator rejects a pending action: nothing changes on the payout.
    pub async fn reject_action(
        &self,
        action_id: &str,
        approver: &str,
        reason: &str,
    ) -> StoreResult<()> {
        if reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        let pending = pending_action(self, action_id).await?;
        operator::check_second_operator(&pending.request.actor, approver)?;
        let mut tx = self
            .begin_write(WriteLock::Payout(pending.payout.as_str()))
            .await?;
        let state = action_state(&mut tx, action_id).await?;
        if state != ActionState::PendingApproval {
            return Err(not_pending(action_id, state));
        }
        sqlx::query(
            "UPDATE operator_actions SET state = 'rejected', decided_by = $2, decided_at = $3, \
               reason = reason || ' [rejected: ' || $4 || ']' WHERE id = $1",
        )
        .bind(action_id)
        .bind(approver)
        .bind(to_millis(crate::clock::now()))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        super::commit(tx).await?;
        Ok(())
    }

    /// Actions waiting for a second operator, oldest first.
    pub async fn pending_approvals(&self) -> StoreResult<Vec<PendingApproval>> {
        let rows: Vec<ActionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM operator_actions a JOIN payouts p ON p.id = a.payout_id \
             WHERE a.state = 'pending_approval' ORDER BY a.requested_at, a.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ActionRow::into_pending).collect()
    }
}

/// Writes an allowed action: the move, its ledger effect, the history line, the action's
/// record (done), and the worker's job when it should run now.
async fn execute(
    tx: &mut Tx,
    id: &PayoutId,
    action_id: &str,
    request: &ActionRequest,
    facts: &PayoutFacts,
    effect: &Effect,
    approved_by: Option<&str>,
) -> StoreResult<Acted> {
    transition::check(facts.status, effect.to, Mover::Operator)?;
    let now = crate::clock::now();
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
    .execute(&mut **tx)
    .await?;
    if effect.to != facts.status || effect.book.is_some() {
        let hold: String = sqlx::query_scalar("SELECT hold_txn_id FROM payouts WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
        if effect.to != facts.status {
            settle_ledger(tx, id, &hold, effect.ledger).await?;
        }
        match &effect.book {
            Some(Booking::Duplicate { object, booking }) => {
                book_duplicate(tx, id, &hold, object, *booking).await?;
                settle_duplicate(tx, id, object, *booking, action_id, &request.actor).await?;
            }
            Some(Booking::PartReturned(part)) => book_part_return(tx, id, &hold, *part).await?,
            Some(Booking::Review { verdict, clawback }) => {
                // The operator whose word made it take effect: the approver under four eyes.
                let by = (
                    approved_by.unwrap_or(&request.actor),
                    request.reason.as_str(),
                );
                super::review::decided(tx, id, *verdict, *clawback, by).await?;
            }
            None => {}
        }
    }
    let actor = Actor {
        worker: Some(&request.actor),
        source: "operator",
    };
    let approval = approved_by.map_or(String::new(), |by| format!(", approved by {by}"));
    let line = format!(
        "{} by {}{approval}: {}",
        effect.summary, request.actor, request.reason
    );
    append_event(tx, id, Some(facts.status), effect.to, None, actor, &line).await?;
    match approved_by {
        None => {
            let done = ActionState::Done;
            record_action(
                tx,
                action_id,
                id,
                request,
                facts.status,
                Some(effect.to),
                done,
            )
            .await?;
        }
        Some(by) => approved(tx, action_id, by, facts.status, effect.to).await?,
    }
    if effect.run_now {
        let key = format!("operator-{action_id}");
        enqueue_payout_job(tx, id, std::time::Duration::ZERO, &key).await?;
    }
    Ok(Acted {
        action_id: action_id.to_string(),
        state: ActionState::Done,
        payout_id: id.to_string(),
        action: request.action.code().to_string(),
        from: facts.status,
        to: effect.to,
        summary: line,
        replayed: false,
    })
}

fn new_action_id() -> String {
    format!("oa_{}", crate::clock::ulid())
}

fn not_pending(action_id: &str, state: ActionState) -> StoreError {
    Refusal::NotPending {
        id: action_id.to_string(),
        state: state.code(),
    }
    .into()
}

/// The payout as the decision needs it (status, the payment it rests on, every attempt's
/// outcome, a cooling-off hold, a worker's lease, its amount, whether it is disputed).
async fn load_facts(tx: &mut Tx, id: &PayoutId) -> StoreResult<PayoutFacts> {
    let row = sqlx::query(
        "SELECT status, provider_ref, next_action_at, lease_expires_at, \
           CAST(units AS BIGINT), currency, provider_state FROM payouts WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
    let status: String = row.try_get(0)?;
    let status = parse_code("payout status", &status, PayoutStatus::from_code)?;
    let next_action_at: Option<i64> = row.try_get(2)?;
    let lease_expires_at: Option<i64> = row.try_get(3)?;
    let currency: String = row.try_get(5)?;
    let amount = Money::from_units(row.try_get(4)?, parse_stored("currency", &currency)?);
    let now = to_millis(crate::clock::now());
    let attempts: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT attempt_no, outcome FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let facts = PayoutFacts {
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
        amount,
        disputed: row.try_get::<Option<String>, _>(6)?.as_deref() == Some("disputed"),
        duplicates: load_duplicates(tx, id).await?,
        flags: super::review::open_flags(tx, id).await?,
    };
    Ok(facts)
}

/// The last request for the payout, if it is this same action and either still waits for
/// approval or was done and the payout is still where it left it.
async fn already_asked(
    tx: &mut Tx,
    id: &PayoutId,
    action: &Action,
    status: PayoutStatus,
) -> StoreResult<Option<Acted>> {
    let last: Option<ActionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACTION_COLUMNS} FROM operator_actions a JOIN payouts p ON p.id = a.payout_id \
         WHERE a.payout_id = $1 AND a.state IN ('done', 'pending_approval') \
         ORDER BY a.requested_at DESC, a.id DESC LIMIT 1"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(last) = last else {
        return Ok(None);
    };
    let pending = last.into_pending()?;
    let same = pending.request.action == *action;
    let state = pending.state;
    let unchanged = match state {
        ActionState::PendingApproval => true,
        _ => pending.to == Some(status),
    };
    if !same || !unchanged || state == ActionState::Rejected {
        return Ok(None);
    }
    Ok(Some(Acted {
        action_id: pending.action_id,
        state,
        payout_id: id.to_string(),
        action: action.code().to_string(),
        from: pending.from,
        to: status,
        summary: pending.request.reason,
        replayed: true,
    }))
}

async fn record_action(
    tx: &mut Tx,
    action_id: &str,
    id: &PayoutId,
    request: &ActionRequest,
    from: PayoutStatus,
    to: Option<PayoutStatus>,
    state: ActionState,
) -> StoreResult<()> {
    let reference = match &request.action {
        Action::MarkPaid { reference } => Some(reference.clone()),
        Action::ResolveDispute {
            outcome: DisputeOutcome::PartReturned { amount },
        } => Some(format!("part_returned:{amount}")),
        Action::ResolveDispute { outcome } => Some(outcome.code().to_string()),
        Action::ResolveDuplicate { object, booking } => {
            Some(format!("{}:{object}", booking.code()))
        }
        Action::Reject { clawback: true } => Some("clawback".into()),
        _ => None,
    };
    let done = state == ActionState::Done;
    let now = to_millis(crate::clock::now());
    sqlx::query(
        "INSERT INTO operator_actions (id, payout_id, action, reference, reason, requested_by, \
           requested_at, state, decided_by, decided_at, from_status, to_status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(action_id)
    .bind(id.as_str())
    .bind(request.action.code())
    .bind(reference)
    .bind(&request.reason)
    .bind(&request.actor)
    .bind(now)
    .bind(state.code())
    .bind(done.then_some(request.actor.as_str()))
    .bind(done.then_some(now))
    .bind(from.code())
    .bind(to.map(PayoutStatus::code))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a pending action done by its approver.
async fn approved(
    tx: &mut Tx,
    action_id: &str,
    by: &str,
    from: PayoutStatus,
    to: PayoutStatus,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE operator_actions SET state = 'done', decided_by = $2, decided_at = $3, \
           from_status = $4, to_status = $5 WHERE id = $1 AND state = 'pending_approval'",
    )
    .bind(action_id)
    .bind(by)
    .bind(to_millis(crate::clock::now()))
    .bind(from.code())
    .bind(to.code())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn action_state(tx: &mut Tx, action_id: &str) -> StoreResult<ActionState> {
    let state: String = sqlx::query_scalar("SELECT state FROM operator_actions WHERE id = $1")
        .bind(action_id)
        .fetch_one(&mut **tx)
        .await?;
    parse_code("action state", &state, ActionState::from_code)
}

/// A pending action by id, read before its payout's lock is taken (the lock is per payout).
async fn pending_action(store: &Store, action_id: &str) -> StoreResult<PendingApproval> {
    let row: Option<ActionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACTION_COLUMNS} FROM operator_actions a JOIN payouts p ON p.id = a.payout_id \
         WHERE a.id = $1"
    )))
    .bind(action_id)
    .fetch_optional(&store.pool)
    .await?;
    let pending = row
        .ok_or_else(|| Refusal::UnknownAction(action_id.to_string()))?
        .into_pending()?;
    if pending.state != ActionState::PendingApproval {
        return Err(not_pending(action_id, pending.state));
    }
    Ok(pending)
}

const ACTION_COLUMNS: &str = "a.id, a.payout_id, a.action, a.reference, a.reason, \
    a.requested_by, a.requested_at, a.state, a.from_status, a.to_status, \
    CAST(p.units AS BIGINT) AS units, p.currency, p.account_id";

#[derive(sqlx::FromRow)]
struct ActionRow {
    id: String,
    payout_id: String,
    action: String,
    reference: Option<String>,
    reason: String,
    requested_by: String,
    requested_at: i64,
    state: String,
    from_status: Option<String>,
    to_status: Option<String>,
    units: i64,
    currency: String,
    account_id: String,
}

impl ActionRow {
    fn into_pending(self) -> StoreResult<PendingApproval> {
        let status = |code: &str| parse_code("payout status", code, PayoutStatus::from_code);
        let currency = parse_stored("currency", &self.currency)?;
        let action = match self.action.as_str() {
            "retry" => Action::Retry,
            "cancel" => Action::Cancel,
            "mark_paid" => Action::MarkPaid {
                reference: self.reference.unwrap_or_default(),
            },
            "release_hold" => Action::ReleaseHold,
            "approve" => Action::Approve,
            "reject" => Action::Reject {
                clawback: self.reference.as_deref() == Some("clawback"),
            },
            "resolve_dispute" => Action::ResolveDispute {
                outcome: stored_outcome(self.reference.as_deref()).ok_or_else(|| {
                    StoreError::Corrupt(format!("action {}: no outcome", self.id))
                })?,
            },
            "resolve_duplicate" => {
                let parsed = self.reference.as_deref().and_then(|r| r.split_once(':'));
                let (booking, object) = parsed
                    .and_then(|(b, o)| Some((DuplicateBooking::from_code(b)?, o)))
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("action {}: no duplicate booking", self.id))
                    })?;
                Action::ResolveDuplicate {
                    object: object.to_string(),
                    booking,
                }
            }
            other => return Err(StoreError::Corrupt(format!("unknown action {other:?}"))),
        };
        Ok(PendingApproval {
            action_id: self.id,
            payout: parse_stored("payout id", &self.payout_id)?,
            account: self.account_id,
            amount: Money::from_units(self.units, currency),
            request: ActionRequest {
                action,
                reason: self.reason,
                actor: self.requested_by,
            },
            requested_at: from_millis(self.requested_at),
            state: parse_code("action state", &self.state, ActionState::from_code)?,
            from: status(self.from_status.as_deref().unwrap_or("queued"))?,
            to: self.to_status.as_deref().map(status).transpose()?,
        })
    }
}

/// A dispute's outcome as `record_action` stored it: `kept`, `returned`, or
/// `part_returned:AMOUNT` (in the payout's currency).
fn stored_outcome(reference: Option<&str>) -> Option<DisputeOutcome> {
    match reference?.split_once(':') {
        Some(("part_returned", amount)) => Some(DisputeOutcome::PartReturned {
            amount: amount.parse().ok()?,
        }),
        _ => DisputeOutcome::from_code(reference?),
    }
}
