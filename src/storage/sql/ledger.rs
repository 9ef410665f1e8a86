//! Ledger persistence: batched writes of balanced transactions, hold resolution, and the
//! invariant check that tests and the demo run after every scenario.

use super::{Db, Tx};
pub(crate) use crate::storage::ledger_views::*;
use sqlx::QueryBuilder;

use super::{BATCH_ROWS, Store, StoreError, StoreResult, parse_code, parse_stored, to_millis};
use crate::domain::ids::PayoutId;
use crate::domain::ledger::{BalancedTransaction, TransactionStatus};
use crate::domain::money::{Currency, Money};
use crate::domain::operator::DuplicateBooking;
use crate::domain::tracking::LedgerEffect;
use crate::storage::sums::{join, wide_sum};

/// Writes balanced transactions with two multi-row INSERTs per chunk.
pub(crate) async fn insert_transactions(
    tx: &mut Tx,
    items: &[(TxnMeta, BalancedTransaction)],
) -> StoreResult<()> {
    let now = to_millis(crate::clock::now());
    let mut deltas = super::book_balances::Deltas::new();
    super::book_balances::collect(&mut deltas, items.iter().map(|(_, t)| t))?;
    super::book_balances::apply(tx, &deltas).await?;
    if super::COPY_SUPPORTED && items.len() >= COPY_FROM {
        return copy_transactions(tx, items, now).await;
    }
    for chunk in items.chunks(BATCH_ROWS) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO ledger_transactions \
             (id, kind, status, source_id, referral_id, payout_id, stream, subject, note, created_at) ",
        );
        q.push_values(chunk, |mut b, (meta, txn)| {
            b.push_bind(meta.id.clone())
                .push_bind(txn.kind.code())
                .push_bind(txn.status.code())
                .push_bind(meta.source_id.clone())
                .push_bind(meta.referral_id.clone())
                .push_bind(meta.payout_id.clone())
                .push_bind(meta.stream)
                .push_bind(meta.subject.clone())
                .push_bind(meta.note.clone())
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;

        let mut postings = Vec::new();
        for (meta, txn) in chunk {
            for p in &txn.postings {
                postings.push((meta.id.as_str(), p, p.amount.to_units()?));
            }
        }
        for part in postings.chunks(BATCH_ROWS) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO ledger_postings (txn_id, book, holder, program, rail, currency, units) ",
            );
            q.push_values(part, |mut b, (txn_id, p, units)| {
                b.push_bind(txn_id.to_string())
                    .push_bind(p.book.code())
                    .push_bind(p.book.holder().map(|h| h.to_string()))
                    .push_bind(p.book.program().map(|x| x.to_string()))
                    .push_bind(p.book.rail().map(|r| r.as_str()))
                    .push_bind(p.amount.currency().code())
                    .push_bind(*units);
            });
            q.build().execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// From how many transactions a write goes through COPY (where the backend has it): an
/// ingest's accruals, a payout run's holds.
const COPY_FROM: usize = 2_000;

/// The same rows as the multi-row path, through COPY: transactions, then their postings.
async fn copy_transactions(
    tx: &mut Tx,
    items: &[(TxnMeta, BalancedTransaction)],
    now: i64,
) -> StoreResult<()> {
    let field = |out: &mut String, v: Option<&str>| match v {
        Some(v) => super::copy_escape(out, v),
        None => out.push_str("\\N"),
    };
    let mut txns = String::with_capacity(items.len() * 160);
    let mut postings = String::with_capacity(items.len() * 240);
    for (meta, txn) in items {
        let values = [
            Some(meta.id.as_str()),
            Some(txn.kind.code()),
            Some(txn.status.code()),
            meta.source_id.as_deref(),
            meta.referral_id.as_deref(),
            meta.payout_id.as_deref(),
            meta.stream,
            meta.subject.as_deref(),
            meta.note.as_deref(),
        ];
        for v in values {
            field(&mut txns, v);
            txns.push('\t');
        }
        txns.push_str(&now.to_string());
        txns.push('\n');
        for p in &txn.postings {
            let holder = p.book.holder().map(|h| h.to_string());
            let program = p.book.program().map(|x| x.to_string());
            let units = p.amount.to_units()?.to_string();
            let values = [
                Some(meta.id.as_str()),
                Some(p.book.code()),
                holder.as_deref(),
                program.as_deref(),
                p.book.rail().map(|r| r.as_str()),
                Some(p.amount.currency().code()),
            ];
            for v in values {
                field(&mut postings, v);
                postings.push('\t');
            }
            postings.push_str(&units);
            postings.push('\n');
        }
    }
    super::copy_rows(
        tx,
        "COPY ledger_transactions (id, kind, status, source_id, referral_id, payout_id, stream, \
         subject, note, created_at) FROM STDIN",
        txns,
    )
    .await?;
    super::copy_rows(
        tx,
        "COPY ledger_postings (txn_id, book, holder, program, rail, currency, units) FROM STDIN",
        postings,
    )
    .await
}

/// Posts or voids a pending hold. Fails if the hold is not pending, so a hold resolves once.
/// The payee's maintained balance moves with it: the pending hold's part comes out, and what
/// it now is goes in.
pub(crate) async fn resolve_hold(
    tx: &mut Tx,
    txn_id: &str,
    to: TransactionStatus,
) -> StoreResult<()> {
    super::book_balances::add_stored(tx, txn_id, -1).await?;
    let done = sqlx::query(
        "UPDATE ledger_transactions SET status = $1, resolved_at = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(to.code())
    .bind(to_millis(crate::clock::now()))
    .bind(txn_id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "hold {txn_id} is not pending; it cannot be {}",
            to.code()
        )));
    }
    super::book_balances::add_stored(tx, txn_id, 1).await
}

/// Writes what the domain decided a move does to the payout's hold
/// (`domain::tracking::LedgerEffect::writes`, given where the hold stands).
pub(crate) async fn settle_ledger(
    tx: &mut Tx,
    payout: &PayoutId,
    hold: &str,
    effect: LedgerEffect,
) -> StoreResult<()> {
    let hold_status: String =
        sqlx::query_scalar("SELECT status FROM ledger_transactions WHERE id = $1")
            .bind(hold)
            .fetch_one(&mut **tx)
            .await?;
    let hold_status = parse_code("hold status", &hold_status, TransactionStatus::from_code)?;
    let writes = effect.writes(hold_status);
    if let Some(to) = writes.resolve {
        resolve_hold(tx, hold, to).await?;
    }
    if writes.reverse {
        mirror_hold(tx, payout, hold, "payout_return", "return", -1).await?;
    }
    if writes.correct {
        mirror_hold(tx, payout, hold, "payout_correction", "correction", 1).await?;
    }
    Ok(())
}

/// Inserts a posted transaction of `kind` whose postings are the hold's times `sign`.
async fn mirror_hold(
    tx: &mut Tx,
    payout: &PayoutId,
    hold: &str,
    kind: &str,
    suffix: &str,
    sign: i64,
) -> StoreResult<()> {
    let id = format!("{payout}-{suffix}");
    let now = to_millis(crate::clock::now());
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, status, payout_id, created_at, resolved_at) \
         VALUES ($1, $2, 'posted', $3, $4, $4)",
    )
    .bind(&id)
    .bind(kind)
    .bind(payout.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_postings (txn_id, book, holder, program, rail, currency, units) \
         SELECT $1, book, holder, program, rail, currency, $3 * units FROM ledger_postings \
         WHERE txn_id = $2 ORDER BY id",
    )
    .bind(&id)
    .bind(hold)
    .bind(sign)
    .execute(&mut **tx)
    .await?;
    super::book_balances::add_stored(tx, &id, 1).await
}

/// A full return of the hold, as `settle_ledger` books one, for the balance tests.
#[cfg(test)]
pub(crate) async fn mirror_hold_for_tests(
    tx: &mut Tx,
    payout: &PayoutId,
    hold: &str,
) -> StoreResult<()> {
    mirror_hold(tx, payout, hold, "payout_return", "return", -1).await
}

/// Books a second payment that landed for the payout (`object`): a posted `payout_duplicate`
/// whose postings are the hold's (the same money left through the same rail again), debiting
/// the payee's cashable book when they owe it, or the program's loss book when the company
/// bears it. Its id is the payout's and the object's, so one object is booked once.
pub(crate) async fn book_duplicate(
    tx: &mut Tx,
    payout: &PayoutId,
    hold: &str,
    object: &str,
    booking: DuplicateBooking,
) -> StoreResult<()> {
    let id = format!("{payout}-duplicate-{object}");
    let now = to_millis(crate::clock::now());
    let note = match booking {
        DuplicateBooking::Owed => format!("{object}, owed by the payee"),
        DuplicateBooking::Loss => format!("{object}, written off as a loss"),
    };
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, status, source_id, payout_id, note, \
           created_at, resolved_at) VALUES ($1, 'payout_duplicate', 'posted', $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(object)
    .bind(payout.as_str())
    .bind(note)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let loss = booking == DuplicateBooking::Loss;
    sqlx::query(
        "INSERT INTO ledger_postings (txn_id, book, holder, program, rail, currency, units) \
         SELECT $1, CASE WHEN $3 AND book = 'referrer_cashable' THEN 'payout_loss' ELSE book END, \
           CASE WHEN $3 AND book = 'referrer_cashable' THEN NULL ELSE holder END, \
           program, rail, currency, units FROM ledger_postings WHERE txn_id = $2 ORDER BY id",
    )
    .bind(&id)
    .bind(hold)
    .bind(loss)
    .execute(&mut **tx)
    .await?;
    super::book_balances::add_stored(tx, &id, 1).await
}

/// Books the part of a delivered payout that came back (a dispute resolved in part): a posted
/// `payout_partial_return` with the hold's books, each moved back by `part`, so the payee's
/// cashable balance is credited exactly that. One per payout (unique index on kind and payout).
pub(crate) async fn book_part_return(
    tx: &mut Tx,
    payout: &PayoutId,
    hold: &str,
    part: Money,
) -> StoreResult<()> {
    let id = format!("{payout}-part-return");
    let units = part.to_units()?;
    let now = to_millis(crate::clock::now());
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, status, payout_id, note, created_at, \
           resolved_at) VALUES ($1, 'payout_partial_return', 'posted', $2, $3, $4, $4)",
    )
    .bind(&id)
    .bind(payout.as_str())
    .bind(format!("{part} came back (dispute)"))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // The hold debits the payee and credits the rail; the part reverses each by its amount.
    let moved = sqlx::query(
        "INSERT INTO ledger_postings (txn_id, book, holder, program, rail, currency, units) \
         SELECT $1, book, holder, program, rail, currency, \
           CASE WHEN units < 0 THEN $3 ELSE -$3 END \
         FROM ledger_postings WHERE txn_id = $2 AND currency = $4 ORDER BY id",
    )
    .bind(&id)
    .bind(hold)
    .bind(units)
    .bind(part.currency().code())
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() != 2 {
        return Err(StoreError::Corrupt(format!(
            "hold {hold} of {payout} has {} postings in {}; a part returned needs its two",
            moved.rows_affected(),
            part.currency()
        )));
    }
    super::book_balances::add_stored(tx, &id, 1).await
}

/// Books money that came back after delivery: a posted `payout_return` whose postings mirror
/// the hold's, so the payee's cashable balance is credited exactly what left. At most one per
/// payout (unique index on kind and payout).
/// payout id, payout status, hold status, hold kind, payout units, units the hold debits,
/// whether a correction was booked.
type HoldRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    bool,
);

impl Store {
    /// Net money paid out per rail and currency, from the rail settlement books.
    pub async fn paid_out_by_rail(&self) -> StoreResult<Vec<RailTotal>> {
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT p.rail, p.currency, {}, COUNT(DISTINCT t.payout_id) \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             WHERE p.book = 'rail_settlement' AND t.status = 'posted' \
               AND t.kind IN ('payout', 'payout_return', 'payout_correction', \
                 'payout_duplicate', 'payout_partial_return') \
             GROUP BY p.rail, p.currency ORDER BY p.rail, p.currency",
                wide_sum("p.units")
            )))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(rail, currency, high, low, payouts)| {
                let currency: Currency = parse_stored("currency", &currency)?;
                Ok(RailTotal {
                    rail: parse_stored("rail", &rail)?,
                    amount: Money::from_total_units(join(high, low), currency)?,
                    payouts,
                })
            })
            .collect()
    }

    /// Checks, with set-based queries over the whole ledger:
    /// - every transaction has at least two postings, summing to zero per currency;
    /// - every payout has exactly one hold of its amount on the right books, and the hold's
    ///   status matches the payout's (paid: posted, failed: voided, otherwise pending);
    /// - no referrer was paid out more cash than it ever earned (clawbacks may still make a
    ///   balance negative, and so may a duplicate payment booked as owed; payouts may not).
    pub async fn check_ledger(&self) -> StoreResult<LedgerCheck> {
        let pool = &self.pool;
        let mut check = LedgerCheck {
            transactions: sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions")
                .fetch_one(pool)
                .await?,
            postings: sqlx::query_scalar("SELECT COUNT(*) FROM ledger_postings")
                .fetch_one(pool)
                .await?,
            problems: Vec::new(),
        };

        let unbalanced: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT txn_id, currency, CAST(SUM(units) AS BIGINT) FROM ledger_postings \
             GROUP BY txn_id, currency HAVING SUM(units) <> 0",
        )
        .fetch_all(pool)
        .await?;
        for (txn, currency, units) in unbalanced {
            check.problems.push(format!(
                "transaction {txn} does not balance in {currency} (off by {units} units)"
            ));
        }

        let thin: Vec<(String, i64)> = sqlx::query_as(
            "SELECT t.id, COUNT(p.id) FROM ledger_transactions t \
             LEFT JOIN ledger_postings p ON p.txn_id = t.id \
             GROUP BY t.id HAVING COUNT(p.id) < 2",
        )
        .fetch_all(pool)
        .await?;
        for (txn, n) in thin {
            check.problems.push(format!(
                "transaction {txn} has {n} posting(s); at least two are needed"
            ));
        }

        check.problems.extend(hold_problems(pool).await?);
        check.problems.extend(overdrawn_payees(pool).await?);

        check.problems.extend(return_problems(pool).await?);
        let mut conn = pool.acquire().await?;
        check
            .problems
            .extend(super::book_balances::drifted(&mut conn).await?);
        Ok(check)
    }
}

/// Every payout has exactly one hold of its amount, in the status the payout's implies.
async fn hold_problems(pool: &super::Pool) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    let holds: Vec<HoldRow> = sqlx::query_as(
        "SELECT p.id, p.status, t.status, t.kind, CAST(p.units AS BIGINT), \
                    CAST(COALESCE((SELECT -SUM(q.units) FROM ledger_postings q \
                              WHERE q.txn_id = t.id AND q.book = 'referrer_cashable' \
                                AND q.holder = p.account_id AND q.currency = p.currency), 0) AS BIGINT), \
                EXISTS (SELECT 1 FROM ledger_transactions c \
                        WHERE c.kind = 'payout_correction' AND c.payout_id = p.id) \
             FROM payouts p LEFT JOIN ledger_transactions t ON t.id = p.hold_txn_id",
    )
    .fetch_all(pool)
    .await?;
    for (payout, status, hold_status, hold_kind, units, held, corrected) in holds {
        let expected = match (status.as_str(), corrected, hold_status.as_deref()) {
            ("paid" | "returned", _, _) => "posted",
            ("failed", _, _) => "voided",
            // Waiting for an operator keeps the money out of the balance: a pending hold,
            // a posted one (stopped after delivery), or any hold plus a correction.
            ("needs_operator", true, Some(s)) => s,
            ("needs_operator", false, Some("posted")) => "posted",
            _ => "pending",
        };
        match (hold_status.as_deref(), hold_kind.as_deref()) {
            (None, _) => problems.push(format!("payout {payout} has no hold transaction")),
            (Some(s), Some("payout")) if s == expected && held == units => {}
            (Some(s), kind) => problems.push(format!(
                "payout {payout} is {status} with amount {units} units, but its hold is {s} \
                 ({}) debiting {held} units; expected {expected}",
                kind.unwrap_or("?")
            )),
        }
    }
    Ok(problems)
}

/// A return exists exactly for returned payouts, and mirrors the hold.
async fn return_problems(pool: &super::Pool) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    let returns: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.id, p.status, CAST(p.units AS BIGINT), \
                (SELECT COUNT(*) FROM ledger_transactions r \
                  WHERE r.kind = 'payout_return' AND r.payout_id = p.id AND r.status = 'posted'), \
                CAST(COALESCE((SELECT SUM(q.units) FROM ledger_postings q \
                  JOIN ledger_transactions r ON r.id = q.txn_id \
                  WHERE r.kind = 'payout_return' AND r.payout_id = p.id \
                    AND q.book = 'referrer_cashable'), 0) AS BIGINT) \
         FROM payouts p \
         WHERE p.status = 'returned' \
            OR EXISTS (SELECT 1 FROM ledger_transactions r \
                       WHERE r.kind = 'payout_return' AND r.payout_id = p.id)",
    )
    .fetch_all(pool)
    .await?;
    for (payout, status, units, n, credited) in returns {
        // A payout waiting for an operator after a contradiction keeps its return.
        let status_ok = status == "returned" || (status == "needs_operator" && n == 1);
        if !status_ok || n != 1 || credited != units {
            problems.push(format!(
                "payout {payout} is {status} with {n} posted return(s) crediting {credited} \
                 units; a returned payout needs exactly one return of {units} units"
            ));
        }
    }
    Ok(problems)
}

/// Payees paid out more cash than they ever earned. Earned minus paid is summed exactly (a
/// lifetime total can pass what one stored amount holds) and judged here.
async fn overdrawn_payees(pool: &super::Pool) -> StoreResult<Vec<String>> {
    let rows: Vec<(String, String, String, i64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT p.holder, p.program, p.currency, {} \
             FROM ledger_postings p \
             JOIN ledger_transactions t ON t.id = p.txn_id \
             WHERE p.book = 'referrer_cashable' AND t.status <> 'voided' \
             GROUP BY p.holder, p.program, p.currency",
            wide_sum(
                "CASE WHEN t.kind IN ('accrual', 'payout', 'payout_return', 'payout_correction', 'payout_partial_return') THEN p.units ELSE 0 END"
            )
        )))
        .fetch_all(pool)
        .await?;
    let mut problems = Vec::new();
    for (holder, program, currency, high, low) in rows {
        let units = join(high, low);
        if units < 0 {
            problems.push(format!(
                "{holder} ({program}, {currency}) was paid out more than it ever earned \
                 (earned minus paid: {units} units)"
            ));
        }
    }
    Ok(problems)
}
