//! The one writer of new payouts, for withdrawals and payout runs alike: each payout's pending
//! hold, its row, its first event and its job, in batches, inside the caller's transaction.

use std::time::Duration;

use chrono::Utc;
use sqlx::QueryBuilder;

use super::events::{payout_event, record_events};
use super::ledger::{TxnMeta, insert_transactions};
use super::payable::forget_payable;
use super::payouts::{PAYOUT_COLUMNS, PayoutRow, PayoutView, payout_view};
use super::{BATCH_ROWS, Db, StoreError, StoreResult, Tx, to_millis};
use crate::domain::events::{EventType, HeldFor};
use crate::domain::fingerprint::content_hash;
use crate::domain::ids::{ProgramId, Rail};
use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
use crate::domain::money::Money;
use crate::domain::payout::PayoutStatus;
use crate::domain::withdrawal::NewPayout;
use crate::storage::queue::payout_task;

/// What a repeated idempotency key is compared by: the same program, rail and amount.
pub(crate) fn request_hash(program: &ProgramId, rail: Rail, amount: Money) -> StoreResult<String> {
    let units = amount.to_units()?;
    Ok(content_hash(&[
        program.as_str(),
        rail.as_str(),
        amount.currency().code(),
        &units.to_string(),
    ]))
}

/// Writes `payouts` (holds, rows, first events, jobs) in `tx`.
pub(crate) async fn insert_payouts(tx: &mut Tx, payouts: &[NewPayout]) -> StoreResult<()> {
    let now_at = crate::clock::now();
    let rows = payouts
        .iter()
        .map(|p| Row::new(p, now_at))
        .collect::<StoreResult<Vec<_>>>()?;
    for chunk in rows.chunks(BATCH_ROWS / 2) {
        insert_chunk(tx, chunk, to_millis(now_at)).await?;
    }
    Ok(())
}

/// Writes one payout (a withdrawal) in `tx`; returns it as stored.
pub(crate) async fn insert_payout(tx: &mut Tx, payout: &NewPayout) -> StoreResult<PayoutView> {
    let now_at = crate::clock::now();
    let row = Row::new(payout, now_at)?;
    let mut views = insert_chunk(tx, std::slice::from_ref(&row), to_millis(now_at)).await?;
    views
        .pop()
        .ok_or_else(|| StoreError::UnknownPayout(payout.id.to_string()))
}

/// Writes a chunk of payouts; returns them as stored, by id.
async fn insert_chunk(tx: &mut Tx, chunk: &[Row<'_>], now: i64) -> StoreResult<Vec<PayoutView>> {
    insert_holds(tx, chunk).await?;
    let views = insert_rows(tx, chunk, now).await?;
    insert_first_events(tx, chunk, now).await?;
    super::review::insert_flags(tx, chunk.iter().map(|r| r.payout), now).await?;
    let views = report_created(tx, chunk, views, now).await?;
    // A held payout has no job: an approval or its tax form queues one.
    let tasks = chunk
        .iter()
        .filter(|r| !r.held())
        .map(|r| payout_task(&r.payout.id, r.delay, "created"))
        .collect::<StoreResult<Vec<_>>>()?;
    super::push_fresh_tasks(tx, tasks).await?;
    Ok(views)
}

/// One payout with what the writer derives for it.
struct Row<'a> {
    payout: &'a NewPayout,
    hold_id: String,
    units: i64,
    request_hash: String,
    next_action_at: i64,
    delay: Duration,
}

impl<'a> Row<'a> {
    fn held(&self) -> bool {
        !self.payout.flags.is_empty()
    }

    fn status(&self) -> PayoutStatus {
        match self.held() {
            true => PayoutStatus::Held,
            false => PayoutStatus::Queued,
        }
    }

    /// The first event's line: why the payout exists, and why it waits when it does.
    fn first_reason(&self) -> String {
        let p = self.payout;
        let mut line = p.reason.clone();
        for f in &p.flags {
            line.push_str(&format!("; held ({}): {}", f.rule, f.evidence));
        }
        line
    }

    fn new(p: &'a NewPayout, now_at: chrono::DateTime<Utc>) -> StoreResult<Row<'a>> {
        Ok(Row {
            payout: p,
            hold_id: format!("lt_{}", crate::clock::ulid()),
            units: p.amount.to_units()?,
            request_hash: request_hash(&p.program, p.rail, p.amount)?,
            next_action_at: p.not_before.map_or(to_millis(now_at), to_millis),
            delay: p
                .not_before
                .and_then(|until| (until - now_at).to_std().ok())
                .unwrap_or(Duration::ZERO),
        })
    }
}

/// The pending holds: the amount moves from the payee's cashable book to the rail's
/// settlement book, and is posted or voided when the payout ends.
async fn insert_holds(tx: &mut Tx, rows: &[Row<'_>]) -> StoreResult<()> {
    let mut holds = Vec::with_capacity(rows.len());
    for r in rows {
        let p = r.payout;
        let hold = TransactionDraft::new(TransactionKind::Payout, TransactionStatus::Pending)
            .transfer(
                Book::ReferrerCashable {
                    account: p.account.clone(),
                    program: p.program.clone(),
                },
                Book::RailSettlement { rail: p.rail },
                p.amount,
            )
            .finish()?;
        holds.push((
            TxnMeta::for_payout(r.hold_id.clone(), p.id.to_string()),
            hold,
        ));
    }
    insert_transactions(tx, &holds).await
}

/// Inserts the payouts' rows and returns them as stored (no second read).
async fn insert_rows(tx: &mut Tx, rows: &[Row<'_>], now: i64) -> StoreResult<Vec<PayoutView>> {
    let mut q = QueryBuilder::<Db>::new(
        "INSERT INTO payouts (id, account_id, program, rail, destination, currency, units, \
         status, idempotency_key, request_hash, hold_txn_id, next_action_at, created_at, updated_at) ",
    );
    q.push_values(rows, |mut b, r| {
        let p = r.payout;
        b.push_bind(p.id.to_string())
            .push_bind(p.account.to_string())
            .push_bind(p.program.to_string())
            .push_bind(p.rail.as_str())
            .push_bind(p.destination.clone())
            .push_bind(p.amount.currency().code())
            .push_bind(r.units)
            .push_bind(r.status().code())
            .push_bind(p.idempotency_key.clone())
            .push_bind(r.request_hash.clone())
            .push_bind(r.hold_id.clone())
            .push_bind(r.next_action_at)
            .push_bind(now)
            .push_bind(now);
    });
    q.push(" RETURNING ").push(PAYOUT_COLUMNS);
    let stored: Vec<PayoutRow> = q.build_query_as().fetch_all(&mut **tx).await?;
    stored.into_iter().map(payout_view).collect()
}

async fn insert_first_events(tx: &mut Tx, rows: &[Row<'_>], now: i64) -> StoreResult<()> {
    let mut q = QueryBuilder::<Db>::new(
        "INSERT INTO payout_events (payout_id, at, from_status, to_status, attempt_no, worker, reason, source) ",
    );
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.payout.id.to_string())
            .push_bind(now)
            .push_bind(None::<String>)
            .push_bind(r.status().code())
            .push_bind(None::<i64>)
            .push_bind(None::<String>)
            .push_bind(r.first_reason())
            .push_bind(r.payout.source);
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// The platform hears of each new payout, and of each held before it is sent (a cooling-off
/// hold); what they take is no longer reported as payable.
async fn report_created(
    tx: &mut Tx,
    rows: &[Row<'_>],
    mut views: Vec<PayoutView>,
    now: i64,
) -> StoreResult<Vec<PayoutView>> {
    views.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(i) = views.binary_search_by(|v| v.id.as_str().cmp(r.payout.id.as_str())) else {
            return Err(StoreError::UnknownPayout(r.payout.id.to_string()));
        };
        let view = &views[i];
        events.push(payout_event(
            EventType::PayoutCreated,
            view,
            &r.payout.reason,
            None,
        ));
        let held_for = match r.payout.flags.iter().find(|f| !f.rule.is_tax()) {
            Some(_) => Some(HeldFor::Review),
            None if r.held() => Some(HeldFor::TaxForm),
            None => (r.next_action_at > now).then_some(HeldFor::CoolingOff),
        };
        if let Some(held_for) = held_for {
            events.push(payout_event(
                EventType::PayoutHeld,
                view,
                &r.first_reason(),
                Some(held_for),
            ));
        }
    }
    let taken: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            let p = r.payout;
            (
                p.account.as_str(),
                p.program.as_str(),
                p.amount.currency().code(),
            )
        })
        .collect();
    forget_payable(tx, &taken).await?;
    record_events(tx, &events).await?;
    Ok(views)
}
