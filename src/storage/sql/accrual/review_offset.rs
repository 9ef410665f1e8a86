//! A rejection in review may claw commissions back outside any stream
//! (`review::book_review_clawback`); a refund of the spend behind them later claws the same
//! commissions back again through their stream. The second meets the first: as much as the
//! review took, and no offset has given back yet, returns to the payee's cashable book, so
//! the pair takes the money once.

use std::collections::HashMap;

use rust_decimal::Decimal;
use sqlx::QueryBuilder;

use super::super::ledger::TxnMeta;
use super::super::review::{IN_LIST, in_list};
use super::super::{Db, StoreResult, Tx, parse_stored};
use super::dec;
use crate::domain::ids::{AccountId, ProgramId};
use crate::domain::ledger::{
    BalancedTransaction, Book, TransactionDraft, TransactionKind, TransactionStatus,
};
use crate::domain::money::{Currency, Money};
use crate::storage::sums::{join, wide_sum};

/// Cashable amounts clawed back through streams in one accrual, by payee, program and
/// currency (positive).
pub(super) type Clawed = HashMap<(AccountId, ProgramId, Currency), Decimal>;

/// The transactions giving back, for each payee in `clawed`, what a review clawback already
/// took of it: at most what is clawed now and what the review clawbacks have left.
pub(super) async fn offset_review_clawbacks(
    tx: &mut Tx,
    clawed: &Clawed,
) -> StoreResult<Vec<(TxnMeta, BalancedTransaction)>> {
    let mut holders: Vec<String> = clawed.keys().map(|(a, _, _)| a.to_string()).collect();
    holders.sort();
    holders.dedup();
    let mut offsets = Vec::new();
    for group in holders.chunks(IN_LIST) {
        // Review clawbacks and their offsets are the only clawbacks outside a stream: their
        // cashable postings sum to minus what the reviews took and no offset gave back.
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT p.holder, p.program, p.currency, {} \
             FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
             WHERE t.kind = 'clawback' AND t.stream IS NULL AND t.status = 'posted' \
               AND p.book = 'referrer_cashable' AND p.holder IN ",
            wide_sum("p.units")
        ));
        in_list(&mut q, group.iter().cloned());
        q.push(" GROUP BY p.holder, p.program, p.currency ORDER BY 1, 2, 3");
        let rows: Vec<(String, String, String, i64, i64)> =
            q.build_query_as().fetch_all(&mut **tx).await?;
        for (holder, program, currency, high, low) in rows {
            let key = (
                parse_stored::<AccountId>("account id", &holder)?,
                parse_stored::<ProgramId>("program", &program)?,
                parse_stored::<Currency>("currency", &currency)?,
            );
            let left = -dec(join(high, low));
            let now = clawed.get(&key).copied().unwrap_or_default();
            let give = left.min(now);
            if give > Decimal::ZERO {
                offsets.push(offset(key, give)?);
            }
        }
    }
    Ok(offsets)
}

fn offset(
    (account, program, currency): (AccountId, ProgramId, Currency),
    give: Decimal,
) -> StoreResult<(TxnMeta, BalancedTransaction)> {
    let txn = TransactionDraft::new(TransactionKind::Clawback, TransactionStatus::Posted)
        .transfer(
            Book::CommissionExpense {
                program: program.clone(),
            },
            Book::ReferrerCashable { account, program },
            Money::new(give, currency),
        )
        .finish()?;
    let meta = TxnMeta {
        id: format!("lt_{}", crate::clock::ulid()),
        source_id: None,
        referral_id: None,
        payout_id: None,
        stream: None,
        subject: None,
        note: Some(
            "met by a rejection's clawback in review: these commissions were taken back then"
                .into(),
        ),
    };
    Ok((meta, txn))
}
