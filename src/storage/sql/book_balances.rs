//! Maintained balances: each payee's book totals per program and currency (cashable, credit,
//! withdrawn, pending), kept in `book_balances` and changed in the same transaction as the
//! postings or the status change that moves them, as TigerBeetle keeps balances on its
//! accounts. A balance or a payout run then reads one row per payee instead of summing a
//! payee's whole history; `ledger-check` holds every row against its postings.
//!
//! Each total is stored as two columns, high and low halves split at 2^32 (see `sums`): an
//! update adds the halves of its delta and carries the low half's overflow into the high
//! one, so no total overflows at any realistic volume and every update stays one statement.

use std::collections::BTreeMap;

use sqlx::QueryBuilder;

use super::{BATCH_ROWS, Db, PACKED_READS, StoreError, StoreResult, Tx, packed};
use crate::domain::ledger::{BalanceTotal, BalancedTransaction};
use crate::storage::balance_views::{
    BOOK_TOTALS, BookRow, BookSums, book_sums, book_total_exprs, split_book_row,
};
use crate::storage::sums::{join, wide_sum};

/// Where totals are split into halves: 2^32 (as in `sums`).
const SPLIT: i128 = 1 << 32;

/// Deltas per (holder, program, currency), one per [`BalanceTotal`], in stored units.
pub(crate) type Deltas = BTreeMap<(String, String, String), [i128; 4]>;

fn index(total: BalanceTotal) -> usize {
    match total {
        BalanceTotal::Cashable => 0,
        BalanceTotal::Credit => 1,
        BalanceTotal::Withdrawn => 2,
        BalanceTotal::Pending => 3,
    }
}

/// Adds what `items` move to `deltas`.
pub(crate) fn collect<'a>(
    deltas: &mut Deltas,
    items: impl IntoIterator<Item = &'a BalancedTransaction>,
) -> StoreResult<()> {
    for txn in items {
        for (holder, program, total, amount) in txn.balance_moves() {
            let key = (
                holder.to_string(),
                program.to_string(),
                amount.currency().code().to_string(),
            );
            let slot = &mut deltas.entry(key).or_default()[index(total)];
            *slot += i128::from(amount.to_units()?);
        }
    }
    Ok(())
}

fn columns() -> String {
    halves().join(", ")
}

/// Each total's two columns, in [`BookRow`](crate::storage::balance_views::BookRow) order.
fn halves() -> Vec<String> {
    BOOK_TOTALS
        .iter()
        .flat_map(|t| [format!("{t}_hi"), format!("{t}_lo")])
        .collect()
}

/// The head of the upsert that adds halves to the stored totals.
fn insert_head() -> String {
    format!(
        "INSERT INTO book_balances (holder, program, currency, {}) ",
        columns()
    )
}

/// Its tail: each total adds the halves given, carrying the low half's overflow into the high
/// half so the low half stays within ±2^32.
fn add_on_conflict() -> String {
    let sets: Vec<String> = BOOK_TOTALS
        .iter()
        .map(|t| {
            let lo = format!("(book_balances.{t}_lo + excluded.{t}_lo)");
            format!(
                "{t}_hi = book_balances.{t}_hi + excluded.{t}_hi + {lo} / {SPLIT}, \
                 {t}_lo = {lo} % {SPLIT}"
            )
        })
        .collect();
    format!(
        " ON CONFLICT (holder, program, currency) DO UPDATE SET {}",
        sets.join(", ")
    )
}

fn split(units: i128) -> StoreResult<(i64, i64)> {
    let high = i64::try_from(units / SPLIT)
        .map_err(|_| StoreError::Corrupt(format!("a balance moves by {units} units at once")))?;
    // |units % 2^32| < 2^32: always fits.
    let low = i64::try_from(units % SPLIT).unwrap_or_default();
    Ok((high, low))
}

/// Adds `deltas` to the maintained balances, in multi-row upserts.
pub(crate) async fn apply(tx: &mut Tx, deltas: &Deltas) -> StoreResult<()> {
    let rows: Vec<_> = deltas
        .iter()
        .filter(|(_, d)| d.iter().any(|u| *u != 0))
        .map(|((h, p, c), d)| {
            let mut halves = [0i64; 8];
            for (i, units) in d.iter().enumerate() {
                (halves[2 * i], halves[2 * i + 1]) = split(*units)?;
            }
            Ok((h, p, c, halves))
        })
        .collect::<StoreResult<_>>()?;
    let conflict = add_on_conflict();
    for chunk in rows.chunks(BATCH_ROWS / 2) {
        let mut q = QueryBuilder::<Db>::new(insert_head());
        q.push_values(chunk, |mut b, (h, p, c, halves)| {
            b.push_bind(h.as_str())
                .push_bind(p.as_str())
                .push_bind(c.as_str());
            for v in halves {
                b.push_bind(*v);
            }
        });
        q.push(&conflict);
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds to the maintained balances what the transaction `txn_id` contributes as it stands
/// now, times `sign`: +1 after writing it, -1 then +1 around a change of its status.
pub(crate) async fn add_stored(tx: &mut Tx, txn_id: &str, sign: i64) -> StoreResult<()> {
    let sums: Vec<String> = book_total_exprs()
        .iter()
        .map(|expr| wide_sum(&format!("{sign} * ({expr})")))
        .collect();
    // `WHERE` is required before `ON CONFLICT` after a SELECT (SQLite's parser); it is here.
    let sql = format!(
        "{}SELECT p.holder, p.program, p.currency, {} \
         FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
         WHERE p.holder IS NOT NULL AND t.status <> 'voided' AND t.id = $1 \
         GROUP BY p.holder, p.program, p.currency{}",
        insert_head(),
        sums.join(", "),
        add_on_conflict(),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(txn_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The maintained balances as `book_sums` rows (holder, program, currency, then each total's
/// two halves); `filter` narrows them (`AND holder = $1`, or nothing for every payee).
pub(crate) fn stored_book_rows(filter: &str) -> String {
    format!(
        "SELECT holder, program, currency, {} FROM book_balances WHERE TRUE {filter} \
         ORDER BY holder, program, currency",
        columns()
    )
}

/// A maintained balance's key: holder, program, currency.
pub(crate) type BookKey = (String, String, String);

/// The next `limit` maintained balances after `after`, in key order, read as one packed value
/// (see `packed`): a payout run walks every payee in chunks of this, so its memory does not
/// grow with the payee count. The primary key serves the range.
pub(crate) async fn chunk_after(
    tx: &mut Tx,
    after: &BookKey,
    limit: i64,
) -> StoreResult<Vec<(BookKey, BookSums)>> {
    let range = "FROM book_balances WHERE (holder, program, currency) > ($1, $2, $3) \
                 ORDER BY holder, program, currency LIMIT $4";
    if !PACKED_READS {
        let sql = format!("SELECT holder, program, currency, {} {range}", columns());
        let rows: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&after.0)
            .bind(&after.1)
            .bind(&after.2)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?;
        return Ok(rows
            .into_iter()
            .map(split_book_row)
            .map(|(h, p, c, sums)| ((h, p, c), sums))
            .collect());
    }
    let halves = halves();
    let mut fields = vec!["holder", "program", "currency"];
    fields.extend(halves.iter().map(String::as_str));
    let inner = format!(
        "SELECT holder, program, currency, {} AS line {range}",
        packed::line(&fields)
    );
    let (rows, text): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(packed::packed(
        &inner,
        "holder, program, currency",
    )))
    .bind(&after.0)
    .bind(&after.1)
    .bind(&after.2)
    .bind(limit)
    .fetch_one(&mut **tx)
    .await?;
    let mut out = Vec::with_capacity(usize::try_from(rows).unwrap_or(0));
    for row in packed::unpack::<11>(&text) {
        let [holder, program, currency, c1, c2, r1, r2, w1, w2, p1, p2] = row?;
        let total =
            |hi: &str, lo: &str| Ok::<_, StoreError>(join(packed::int(hi)?, packed::int(lo)?));
        let sums = BookSums {
            cashable: total(c1, c2)?,
            credit: total(r1, r2)?,
            withdrawn: total(w1, w2)?,
            pending: total(p1, p2)?,
        };
        out.push(((holder.into(), program.into(), currency.into()), sums));
    }
    Ok(out)
}

/// Rows whose maintained balance differs from the sum of its postings.
pub(crate) async fn drifted(conn: &mut super::Conn) -> StoreResult<Vec<String>> {
    let summed: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(book_sums("")))
        .fetch_all(&mut *conn)
        .await?;
    let stored: Vec<BookRow> = sqlx::query_as(sqlx::AssertSqlSafe(stored_book_rows("")))
        .fetch_all(&mut *conn)
        .await?;
    let mut summed: BTreeMap<_, _> = summed
        .into_iter()
        .map(split_book_row)
        .map(|(h, p, c, s)| ((h, p, c), s))
        .collect();
    let mut problems = Vec::new();
    for (h, p, c, kept) in stored.into_iter().map(split_book_row) {
        let actual = summed
            .remove(&(h.clone(), p.clone(), c.clone()))
            .unwrap_or_default();
        if kept != actual {
            problems.push(format!(
                "the maintained balance of {h} ({p}, {c}) is {kept:?}, but its postings sum to {actual:?}"
            ));
        }
    }
    for ((h, p, c), actual) in summed {
        if actual != Default::default() {
            problems.push(format!(
                "{h} ({p}, {c}) has postings summing to {actual:?} but no maintained balance"
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    //! Every way the ledger moves a payee's money, interleaved at random; after each step the
    //! maintained balances must equal the sums of the postings.
    use super::super::ledger::{
        TxnMeta, book_duplicate, book_part_return, insert_transactions, mirror_hold_for_tests,
        resolve_hold,
    };
    use super::super::{Store, WriteLock};
    use super::*;
    use crate::domain::ids::{AccountId, PayoutId, ProgramId, Rail};
    use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
    use crate::domain::money::{Currency, Money};
    use crate::domain::operator::DuplicateBooking;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Accrue {
            who: usize,
            units: i64,
            credit_pct: i64,
        },
        Clawback {
            who: usize,
            units: i64,
        },
        Hold {
            who: usize,
            units: i64,
        },
        Post(usize),
        Void(usize),
        Return(usize),
        PartReturn(usize, i64),
        Duplicate(usize, bool),
    }

    fn units() -> impl Strategy<Value = i64> {
        // Small amounts, and ones whose halves carry (past 2^32 and close to the cap).
        prop_oneof![1i64..1_000_000_000, (1i64 << 32)..(1i64 << 61)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3, units(), 0i64..=100).prop_map(|(who, units, credit_pct)| Op::Accrue {
                who,
                units,
                credit_pct
            }),
            (0usize..3, units()).prop_map(|(who, units)| Op::Clawback { who, units }),
            (0usize..3, units()).prop_map(|(who, units)| Op::Hold { who, units }),
            (0usize..8).prop_map(Op::Post),
            (0usize..8).prop_map(Op::Void),
            (0usize..8).prop_map(Op::Return),
            (0usize..8, 1i64..100).prop_map(|(h, pct)| Op::PartReturn(h, pct)),
            (0usize..8, any::<bool>()).prop_map(|(h, loss)| Op::Duplicate(h, loss)),
        ]
    }

    struct Hold {
        id: String,
        payout: PayoutId,
        money: Money,
        status: TransactionStatus,
        returned: bool,
    }

    fn meta(id: String, payout: Option<&PayoutId>) -> TxnMeta {
        TxnMeta {
            id,
            source_id: None,
            referral_id: None,
            payout_id: payout.map(|p| p.to_string()),
            stream: None,
            subject: None,
            note: None,
        }
    }

    async fn apply_op(store: &Store, n: usize, op: &Op, holds: &mut Vec<Hold>) {
        let holder = |who: usize| AccountId::parse(&format!("payee-{who}")).unwrap();
        let program = ProgramId::parse("vast").unwrap();
        let currency = if n.is_multiple_of(3) {
            Currency::Eur
        } else {
            Currency::Usd
        };
        let cashable = |who| Book::ReferrerCashable {
            account: holder(who),
            program: program.clone(),
        };
        let expense = Book::CommissionExpense {
            program: program.clone(),
        };
        let mut tx = store.begin_write(WriteLock::Accrual).await.unwrap();
        let pick = |i: usize, holds: &[Hold], want: fn(&Hold) -> bool| {
            let open: Vec<usize> = (0..holds.len()).filter(|k| want(&holds[*k])).collect();
            (!open.is_empty()).then(|| open[i % open.len()])
        };
        match op {
            Op::Accrue {
                who,
                units,
                credit_pct,
            } => {
                let credit = units / 100 * credit_pct;
                let txn =
                    TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
                        .post(expense, Money::from_units(-units, currency))
                        .post(cashable(*who), Money::from_units(units - credit, currency))
                        .post(
                            Book::ReferrerCredit {
                                account: holder(*who),
                                program: program.clone(),
                            },
                            Money::from_units(credit, currency),
                        )
                        .finish()
                        .unwrap();
                insert_transactions(&mut tx, &[(meta(format!("t{n}"), None), txn)])
                    .await
                    .unwrap();
            }
            Op::Clawback { who, units } => {
                let txn =
                    TransactionDraft::new(TransactionKind::Clawback, TransactionStatus::Posted)
                        .transfer(cashable(*who), expense, Money::from_units(*units, currency))
                        .finish()
                        .unwrap();
                insert_transactions(&mut tx, &[(meta(format!("t{n}"), None), txn)])
                    .await
                    .unwrap();
            }
            Op::Hold { who, units } => {
                let payout = PayoutId::from_ulid(crate::clock::ulid());
                let money = Money::from_units(*units, currency);
                let txn =
                    TransactionDraft::new(TransactionKind::Payout, TransactionStatus::Pending)
                        .transfer(
                            cashable(*who),
                            Book::RailSettlement { rail: Rail::Stripe },
                            money,
                        )
                        .finish()
                        .unwrap();
                let id = format!("t{n}");
                insert_transactions(&mut tx, &[(meta(id.clone(), Some(&payout)), txn)])
                    .await
                    .unwrap();
                holds.push(Hold {
                    id,
                    payout,
                    money,
                    status: TransactionStatus::Pending,
                    returned: false,
                });
            }
            Op::Post(i) | Op::Void(i) => {
                let pending = |h: &Hold| h.status == TransactionStatus::Pending;
                if let Some(k) = pick(*i, holds, pending) {
                    let to = match op {
                        Op::Post(_) => TransactionStatus::Posted,
                        _ => TransactionStatus::Voided,
                    };
                    resolve_hold(&mut tx, &holds[k].id, to).await.unwrap();
                    holds[k].status = to;
                }
            }
            Op::Return(i) | Op::PartReturn(i, _) => {
                let posted = |h: &Hold| h.status == TransactionStatus::Posted && !h.returned;
                if let Some(k) = pick(*i, holds, posted) {
                    let h = &mut holds[k];
                    match op {
                        Op::PartReturn(_, pct) => {
                            let part = h.money.to_units().unwrap() / 100 * pct;
                            let part = Money::from_units(part.max(1), h.money.currency());
                            book_part_return(&mut tx, &h.payout, &h.id, part)
                                .await
                                .unwrap();
                        }
                        _ => mirror_hold_for_tests(&mut tx, &h.payout, &h.id)
                            .await
                            .unwrap(),
                    }
                    h.returned = true;
                }
            }
            Op::Duplicate(i, loss) => {
                let posted = |h: &Hold| h.status == TransactionStatus::Posted;
                if let Some(k) = pick(*i, holds, posted) {
                    let booking = if *loss {
                        DuplicateBooking::Loss
                    } else {
                        DuplicateBooking::Owed
                    };
                    let h = &holds[k];
                    book_duplicate(&mut tx, &h.payout, &h.id, &format!("tr_{n}"), booking)
                        .await
                        .unwrap();
                }
            }
        }
        tx.commit().await.unwrap();
    }

    async fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let (store, _guard) = super::super::super::test_store().await;
        let mut holds = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            apply_op(&store, n, op, &mut holds).await;
            let mut conn = store.pool().acquire().await.unwrap();
            let drift = drifted(&mut conn).await.unwrap();
            prop_assert!(drift.is_empty(), "after step {n} ({op:?}): {drift:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        #[test]
        fn maintained_balances_equal_their_postings_after_every_step(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(check(ops))?;
        }
    }
}
