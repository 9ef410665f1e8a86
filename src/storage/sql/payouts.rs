//! Payout persistence: withdrawals, the payout's reads and its event history. The fenced
//! steps a worker writes are in `steps.rs`.

pub(crate) use crate::storage::payout_views::*;

use super::{Conn, Tx};

use super::balances::load_standing;
use super::new_payouts::{insert_payout, request_hash};
use super::{
    Store, StoreError, StoreResult, WriteLock, from_millis, parse_code, parse_stored, to_millis,
};
use crate::domain::cooling_off::held_until;
use crate::domain::ids::{AccountId, PayoutId};
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::withdrawal::{self, Ask, SavedMethod, Standing};

pub(crate) const PAYOUT_COLUMNS: &str = "id, account_id, program, rail, destination, currency, CAST(units AS BIGINT) AS units, status, \
     attempts, provider_ref, provider_status, provider_status_at, polls, lookup_failures, \
     watch_until, last_error, \
     idempotency_key, created_at, updated_at, next_action_at";

#[derive(sqlx::FromRow)]
pub(crate) struct PayoutRow {
    id: String,
    account_id: String,
    program: String,
    rail: String,
    destination: String,
    currency: String,
    units: i64,
    status: String,
    attempts: i64,
    provider_ref: Option<String>,
    provider_status: Option<String>,
    provider_status_at: Option<i64>,
    polls: i64,
    lookup_failures: i64,
    watch_until: Option<i64>,
    last_error: Option<String>,
    idempotency_key: String,
    created_at: i64,
    updated_at: i64,
    next_action_at: Option<i64>,
}

/// attempt_no, provider_key, outcome, provider_ref, detail, started_at, finished_at.
type AttemptRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);
/// at, from_status, to_status, attempt_no, worker, reason, source.
type EventRow = (
    i64,
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
);

pub(crate) fn payout_view(row: PayoutRow) -> StoreResult<PayoutView> {
    let currency: Currency = parse_stored("currency", &row.currency)?;
    let status = parse_code("payout status", &row.status, PayoutStatus::from_code)?;
    // A held payout keeps its cooling-off time for when it is released; no worker acts now.
    let next_step_at = match status {
        PayoutStatus::Held => None,
        _ => row.next_action_at.map(from_millis),
    };
    Ok(PayoutView {
        id: parse_stored("payout id", &row.id)?,
        account: parse_stored("account id", &row.account_id)?,
        program: parse_stored("program", &row.program)?,
        rail: parse_stored("rail", &row.rail)?,
        destination: row.destination,
        amount: Money::from_units(row.units, currency),
        status,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        provider_ref: row.provider_ref,
        provider_status: row.provider_status,
        provider_status_at: row.provider_status_at.map(from_millis),
        polls: u32::try_from(row.polls).unwrap_or(u32::MAX),
        lookup_failures: u32::try_from(row.lookup_failures).unwrap_or(u32::MAX),
        watch_until: row.watch_until.map(from_millis),
        last_error: row.last_error,
        idempotency_key: row.idempotency_key,
        created_at: from_millis(row.created_at),
        updated_at: from_millis(row.updated_at),
        next_step_at,
    })
}

pub(crate) async fn fetch_payout(conn: &mut Conn, id: &str) -> StoreResult<Option<PayoutView>> {
    let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
    let row: Option<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(payout_view).transpose()
}

/// The payouts named by `ids` (in no particular order), in the caller's transaction.
pub(crate) async fn fetch_payouts(conn: &mut Conn, ids: &[&str]) -> StoreResult<Vec<PayoutView>> {
    let mut q = sqlx::QueryBuilder::<super::Db>::new(format!(
        "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id IN ("
    ));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(")");
    let rows: Vec<PayoutRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    rows.into_iter().map(payout_view).collect()
}

/// Who wrote an event and how they learned what it says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    pub worker: Option<&'a str>,
    pub source: &'a str,
}

pub(crate) async fn append_event(
    tx: &mut Tx,
    payout: &PayoutId,
    from: Option<PayoutStatus>,
    to: PayoutStatus,
    attempt: Option<u32>,
    actor: Actor<'_>,
    reason: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payout_events \
           (payout_id, at, from_status, to_status, attempt_no, worker, reason, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(payout.as_str())
    .bind(to_millis(crate::clock::now()))
    .bind(from.map(|s| s.code()))
    .bind(to.code())
    .bind(attempt.map(i64::from))
    .bind(actor.worker)
    .bind(reason)
    .bind(actor.source)
    .execute(&mut **tx)
    .await?;
    // The platform hears of the move in the same transaction (the outbox).
    super::events::payout_moved(tx, payout, from, to, reason).await
}

impl Store {
    /// Creates a withdrawal: checks eligibility and availability, places the hold, creates the
    /// payout and enqueues its job, all in one transaction. A repeated idempotency key with the
    /// same request returns the first payout; with another request it is refused.
    pub async fn create_withdrawal(
        &self,
        req: &WithdrawalRequest,
    ) -> Result<WithdrawalOutcome, WithdrawError> {
        let mut tx = self
            .begin_write(WriteLock::Account(req.account.as_str()))
            .await?;
        let outcome = self.withdraw_in(&mut tx, req).await?;
        super::commit(tx).await?;
        Ok(outcome)
    }

    /// The withdrawal's named steps in the caller's transaction, which holds the account's
    /// write lock; nothing is written unless the withdrawal is granted.
    pub(crate) async fn withdraw_in(
        &self,
        tx: &mut Tx,
        req: &WithdrawalRequest,
    ) -> Result<WithdrawalOutcome, WithdrawError> {
        let request_hash = request_hash(&req.program, req.rail, req.amount)?;
        // 1. A repeated key: the first payout, or a refusal if the request differs.
        if let Some(replayed) = replay_withdrawal(tx, req, &request_hash).await? {
            return Ok(replayed);
        }
        // 2. Load what the decision reads: the balance and the saved method.
        let method: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT destination, changed_at FROM payout_methods WHERE account_id = $1 AND rail = $2",
        )
        .bind(req.account.as_str())
        .bind(req.rail.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        let balance = match load_standing(tx, &self.programs, &req.account).await {
            Err(StoreError::UnknownAccount(_)) => {
                return Err(WithdrawError::UnknownAccount(req.account.clone()));
            }
            other => other?,
        };
        // 3. Decide.
        let now = crate::clock::now();
        let changed_at = method.as_ref().and_then(|(_, at)| at.map(from_millis));
        let held = held_until(changed_at, self.safeguards.method_cooling_off, now);
        let program = balance.program(req.program.as_str(), req.amount.currency());
        let ask = Ask {
            account: &req.account,
            program: &req.program,
            rail: req.rail,
            amount: req.amount,
            idempotency_key: req.idempotency_key.as_str(),
        };
        let standing = program.map(|p| Standing {
            ineligible: p.reason.as_deref(),
            rails: &p.rails,
            available: p.available,
            payable_now: p.payable_now,
        });
        let saved = method.as_ref().map(|(destination, _)| SavedMethod {
            destination,
            changed_at,
        });
        let mut payout = withdrawal::decide(
            PayoutId::from_ulid(crate::clock::ulid()),
            ask,
            standing,
            saved,
            held,
        )
        .map_err(|refusal| WithdrawError::refused(req, refusal))?;
        // 4. Hold it for review or a tax form where a rule says so.
        self.screen(tx, std::slice::from_mut(&mut payout)).await?;
        // 5. Write the hold, the payout, its first event and its job (none while held).
        let view = insert_payout(tx, &payout).await?;
        Ok(WithdrawalOutcome {
            payout: view,
            replayed: false,
        })
    }

    pub async fn payout(&self, id: &str) -> StoreResult<PayoutDetail> {
        let mut conn = self.pool.acquire().await?;
        let payout = fetch_payout(&mut conn, id)
            .await?
            .ok_or_else(|| StoreError::UnknownPayout(id.to_string()))?;
        let attempts: Vec<AttemptRow> =
            sqlx::query_as(
                "SELECT attempt_no, provider_key, outcome, provider_ref, detail, started_at, finished_at \
                 FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT at, from_status, to_status, attempt_no, worker, reason, source \
                 FROM payout_events WHERE payout_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let flags = super::review::flags_of(&mut conn, &[id.to_string()]).await?;
        Ok(PayoutDetail {
            payout,
            flags: flags.into_values().next().unwrap_or_default(),
            status_reason: events.last().map(|e| e.5.clone()),
            attempts: attempts
                .into_iter()
                .map(|(n, key, outcome, r, detail, s, f)| AttemptView {
                    attempt: u32::try_from(n).unwrap_or(u32::MAX),
                    provider_key: key,
                    outcome,
                    provider_ref: r,
                    detail,
                    started_at: from_millis(s),
                    finished_at: f.map(from_millis),
                })
                .collect(),
            events: events
                .into_iter()
                .map(
                    |(at, from, to, attempt, worker, reason, source)| PayoutEvent {
                        at: from_millis(at),
                        from,
                        to,
                        attempt: attempt.and_then(|a| u32::try_from(a).ok()),
                        worker,
                        reason,
                        source,
                    },
                )
                .collect(),
        })
    }

    /// Payouts, newest first, optionally for one account.
    pub async fn list_payouts(&self, account: Option<&AccountId>) -> StoreResult<Vec<PayoutView>> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE ($1 IS NULL OR account_id = $1) \
             ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account.map(|a| a.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(payout_view).collect()
    }

    /// One page of an account's payouts, newest first, after `cursor` (keyset pagination, so
    /// a page costs the same however deep it is and new payouts never shift later pages).
    pub async fn payouts_page(
        &self,
        account: &AccountId,
        cursor: Option<&PayoutCursor>,
        limit: u32,
    ) -> StoreResult<PayoutPage> {
        let mut conn = self.pool.acquire().await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM accounts WHERE id = $1")
                .bind(account.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if known.is_none() {
            return Err(StoreError::UnknownAccount(account.to_string()));
        }
        let (after_at, after_id) = match cursor {
            Some(c) => (c.created_at, c.id.as_str()),
            // Past every real row: ids sort after "", times before i64::MAX.
            None => (i64::MAX, ""),
        };
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE account_id = $1 \
               AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let mut rows: Vec<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(after_at)
            .bind(after_id)
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(
                PayoutCursor {
                    created_at: last.created_at,
                    id: last.id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(PayoutPage {
            payouts: rows
                .into_iter()
                .map(payout_view)
                .collect::<StoreResult<_>>()?,
            next_cursor,
        })
    }

    /// Queued payouts not due yet: held by a cooling-off. A worker waiting for work to be
    /// done does not wait for these.
    pub async fn held_payouts(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM payouts WHERE status = 'queued' AND next_action_at > $1",
        )
        .bind(to_millis(crate::clock::now()))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Counts of payouts per status, for progress and idle detection.
    pub async fn payout_status_counts(&self) -> StoreResult<Vec<(PayoutStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM payouts GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(s, n)| Ok((parse_code("payout status", &s, PayoutStatus::from_code)?, n)))
            .collect()
    }
}

/// The payout an earlier withdrawal with the same key made, if any; a refusal when that
/// request differed (another program, rail or amount).
async fn replay_withdrawal(
    tx: &mut Tx,
    req: &WithdrawalRequest,
    request_hash: &str,
) -> Result<Option<WithdrawalOutcome>, WithdrawError> {
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT id, request_hash FROM payouts WHERE account_id = $1 AND idempotency_key = $2",
    )
    .bind(req.account.as_str())
    .bind(req.idempotency_key.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((id, hash)) = existing else {
        return Ok(None);
    };
    if hash != request_hash {
        return Err(WithdrawError::IdempotencyConflict {
            key: req.idempotency_key.to_string(),
            existing: id,
        });
    }
    let payout = fetch_payout(tx, &id)
        .await?
        .ok_or(StoreError::UnknownPayout(id))?;
    Ok(Some(WithdrawalOutcome {
        payout,
        replayed: true,
    }))
}
