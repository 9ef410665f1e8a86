//! A payee's balance at an instant and its monthly statements, read from the ledger with the
//! accounting exports' rule of when a transaction counts (see `accounting_views`): booked
//! earnings and clawbacks from their booking, a payout from the provider's confirmation, a
//! hold while it was pending.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoreResult, from_millis, parse_stored, to_millis};
use crate::domain::ids::{AccountId, ProgramId};
use crate::domain::money::{Currency, Money};
use crate::domain::statement::{
    BalanceAt, Month, Movement, MovementKind, Statement, program_statement,
};
use crate::storage::sums::{join, wide_sum};

/// Posted, and in effect before `$1` (a payout from its confirmation).
const POSTED_AT: &str = "t.status = 'posted' AND COALESCE(t.resolved_at, t.created_at) < $1";
/// A hold that existed at `$1` and was not yet resolved then.
const PENDING_AT: &str = "t.created_at < $1 AND (t.status = 'pending' OR t.resolved_at >= $1)";
const EARNING: &str = "t.kind IN ('accrual', 'clawback')";

/// program, currency, then cashable, credit, withdrawn and pending, each in halves.
type Row = (String, String, i64, i64, i64, i64, i64, i64, i64, i64);

/// transaction, program, currency, kind, stream, payout, effective ms, book, units, rail,
/// reference.
type MoveRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
);

impl Store {
    /// The account's balance per program as it stood at `at`.
    pub async fn balance_at(
        &self,
        account: &AccountId,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<BalanceAt>> {
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(StoreError::UnknownAccount(account.to_string()));
        }
        let sums = [
            format!(
                "CASE WHEN p.book = 'referrer_cashable' AND {EARNING} AND {POSTED_AT} THEN p.units END"
            ),
            format!("CASE WHEN p.book = 'referrer_credit' AND {POSTED_AT} THEN p.units END"),
            format!(
                "CASE WHEN p.book = 'referrer_cashable' AND NOT {EARNING} AND {POSTED_AT} THEN -p.units END"
            ),
            format!(
                "CASE WHEN p.book = 'referrer_cashable' AND t.kind = 'payout' AND {PENDING_AT} THEN -p.units END"
            ),
        ];
        let sql = format!(
            "SELECT p.program, p.currency, {} \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             WHERE p.holder = $2 AND t.created_at < $1 \
             GROUP BY p.program, p.currency ORDER BY p.program, p.currency",
            sums.iter()
                .map(|s| wide_sum(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(to_millis(at))
            .bind(account.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(balance_row).collect()
    }

    /// The account's statement for `month`: per program, the balance owed at its start and
    /// end and every movement between, checked to add up.
    pub async fn statement(&self, account: &AccountId, month: Month) -> StoreResult<Statement> {
        let opening = self.balance_at(account, month.start()).await?;
        let closing = self.balance_at(account, month.end()).await?;
        let rows: Vec<MoveRow> = sqlx::query_as(
            "SELECT t.id, p.program, p.currency, t.kind, t.stream, t.payout_id, \
                    CAST(COALESCE(t.resolved_at, t.created_at) AS BIGINT), p.book, \
                    CAST(p.units AS BIGINT), o.rail, o.provider_ref \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             LEFT JOIN payouts o ON o.id = t.payout_id \
             WHERE p.holder = $1 AND t.status = 'posted' \
               AND p.book IN ('referrer_cashable', 'referrer_credit') \
               AND COALESCE(t.resolved_at, t.created_at) >= $2 \
               AND COALESCE(t.resolved_at, t.created_at) < $3 \
             ORDER BY COALESCE(t.resolved_at, t.created_at), t.id, p.book",
        )
        .bind(account.as_str())
        .bind(to_millis(month.start()))
        .bind(to_millis(month.end()))
        .fetch_all(&self.pool)
        .await?;
        let mut moves: BTreeMap<(String, String), Vec<Movement>> = BTreeMap::new();
        for row in rows {
            add_posting(&mut moves, row)?;
        }
        let mut keys: BTreeSet<(String, String)> = moves.keys().cloned().collect();
        let key = |b: &BalanceAt| (b.program.to_string(), b.currency.code().to_string());
        keys.extend(opening.iter().chain(&closing).map(key));
        let mut programs = Vec::with_capacity(keys.len());
        for (program, currency) in keys {
            let find = |list: &[BalanceAt]| {
                list.iter()
                    .find(|b| b.program.as_str() == program && b.currency.code() == currency)
                    .cloned()
            };
            let (open, close) = (find(&opening), find(&closing));
            programs.push(
                program_statement(
                    parse_stored("program", &program)?,
                    parse_stored("currency", &currency)?,
                    open.as_ref(),
                    close.as_ref(),
                    moves
                        .remove(&(program.clone(), currency))
                        .unwrap_or_default(),
                )
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(Statement {
            account: account.clone(),
            month: month.to_string(),
            from: month.start(),
            to: month.end(),
            programs,
        })
    }
}

fn balance_row(row: Row) -> StoreResult<BalanceAt> {
    let (program, currency, c1, c2, r1, r2, w1, w2, p1, p2) = row;
    let program: ProgramId = parse_stored("program", &program)?;
    let currency: Currency = parse_stored("currency", &currency)?;
    let m = |u: i128| Money::from_total_units(u, currency);
    let (cashable, credit) = (join(c1, c2), join(r1, r2));
    let (withdrawn, pending) = (join(w1, w2), join(p1, p2));
    let overflow = || StoreError::Corrupt("balance overflows the storable range".into());
    Ok(BalanceAt {
        program,
        currency,
        earned: m(cashable.checked_add(credit).ok_or_else(overflow)?)?,
        cashable: m(cashable)?,
        credit: m(credit)?,
        withdrawn: m(withdrawn)?,
        pending: m(pending)?,
        available: m(cashable
            .checked_sub(withdrawn)
            .and_then(|v| v.checked_sub(pending))
            .ok_or_else(overflow)?)?,
    })
}

/// Adds one posting to its transaction's movement (a transaction's cash and credit postings
/// are one movement: rows come ordered by transaction).
fn add_posting(
    moves: &mut BTreeMap<(String, String), Vec<Movement>>,
    row: MoveRow,
) -> StoreResult<()> {
    let (txn, program, currency_code, kind, stream, payout, at, book, units, rail, reference) = row;
    let currency: Currency = parse_stored("currency", &currency_code)?;
    let amount = Money::from_total_units(i128::from(units), currency)?;
    let zero = Money::zero(currency);
    let kind = match kind.as_str() {
        "accrual" => MovementKind::Earning,
        "clawback" => MovementKind::Clawback,
        "payout" => MovementKind::Payout,
        "payout_return" | "payout_partial_return" => MovementKind::Return,
        _ => MovementKind::Correction,
    };
    let at = from_millis(at);
    let list = moves.entry((program, currency_code)).or_default();
    let same = list.last_mut().filter(|m| m.transaction == txn);
    let movement = match same {
        Some(m) => m,
        None => {
            list.push(Movement {
                transaction: txn,
                at,
                kind,
                stream,
                amount: zero,
                credit: zero,
                payout_id: payout,
                rail,
                reference,
            });
            let last = list.len() - 1;
            &mut list[last]
        }
    };
    if book == "referrer_credit" {
        movement.credit = movement.credit.checked_add(&amount)?;
    } else {
        movement.amount = movement.amount.checked_add(&amount)?;
    }
    Ok(())
}
