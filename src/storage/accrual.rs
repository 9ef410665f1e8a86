//! Turning facts into ledger entries: judge referrals, post commissions and clawbacks.
//!
//! Both steps are set-based: one query finds everything not yet done (an anti-join against
//! the ledger), the pure rules decide, and batched inserts write the result. Each source
//! record posts at most once per referral (unique index `ledger_source`), so re-running is a
//! no-op and a referral that arrives after its usage still collects it.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::ledger::{TxnMeta, insert_transactions};
use super::{BATCH_ROWS, Store, StoreResult, from_millis, parse_stored, to_millis};
use crate::domain::commission::{Accrual, ProgramTerms, accrue, claw_back};
use crate::domain::ids::{AccountId, Program};
use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
use crate::domain::money::{Currency, Money};
use crate::domain::referral::{AccountFacts, judge_referral};

/// Rows handled per accrual pass, bounding memory on very large ingests.
const ACCRUAL_PAGE: i64 = 5_000;

type AccountCols = (String, i64, String, Option<String>, i64);

fn facts((id, created, email, fingerprint, hosted): AccountCols) -> StoreResult<AccountFacts> {
    Ok(AccountFacts {
        id: parse_stored("account id", &id)?,
        created_at: from_millis(created),
        email,
        payment_fingerprint: fingerprint,
        hosted_machines: hosted != 0,
    })
}

impl Store {
    /// Judges every pending referral whose two accounts are both known. Returns how many.
    pub(super) async fn judge_pending_referrals(
        tx: &mut Transaction<'static, Sqlite>,
    ) -> StoreResult<usize> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            String,
            i64,
            String,
            i64,
            String,
            Option<String>,
            i64,
            String,
            i64,
            String,
            Option<String>,
            i64,
            i64,
        )> = sqlx::query_as(
            "SELECT r.id, r.referred_at, \
                        a.id, a.created_at, a.email, a.payment_fingerprint, a.hosted_machines, \
                        b.id, b.created_at, b.email, b.payment_fingerprint, b.hosted_machines, \
                        EXISTS (SELECT 1 FROM account_links l \
                                WHERE (l.account_a = a.id AND l.account_b = b.id) \
                                   OR (l.account_a = b.id AND l.account_b = a.id)) \
                 FROM referrals r \
                 JOIN accounts a ON a.id = r.referrer_id \
                 JOIN accounts b ON b.id = r.referred_id \
                 WHERE r.status = 'pending'",
        )
        .fetch_all(&mut **tx)
        .await?;

        let mut verdicts: BTreeMap<(&'static str, Option<&'static str>), Vec<String>> =
            BTreeMap::new();
        let count = rows.len();
        for (id, at, a_id, a_c, a_e, a_f, a_h, b_id, b_c, b_e, b_f, b_h, linked) in rows {
            let referrer = facts((a_id, a_c, a_e, a_f, a_h))?;
            let referred = facts((b_id, b_c, b_e, b_f, b_h))?;
            let key = match judge_referral(&referrer, &referred, from_millis(at), linked != 0) {
                Ok(()) => ("qualified", None),
                Err(reason) => ("disqualified", Some(reason.code())),
            };
            verdicts.entry(key).or_default().push(id);
        }
        let now = to_millis(Utc::now());
        for ((status, reason), ids) in verdicts {
            for chunk in ids.chunks(BATCH_ROWS) {
                let mut q = QueryBuilder::<Sqlite>::new("UPDATE referrals SET status = ");
                q.push_bind(status)
                    .push(", disqualification = ")
                    .push_bind(reason)
                    .push(", judged_at = ")
                    .push_bind(now)
                    .push(" WHERE status = 'pending' AND id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(id.as_str());
                }
                q.push(")");
                q.build().execute(&mut **tx).await?;
            }
        }
        Ok(count)
    }

    /// Posts commissions for usage and clawbacks for refunds not yet in the ledger.
    pub(super) async fn post_pending_accruals(
        tx: &mut Transaction<'static, Sqlite>,
    ) -> StoreResult<usize> {
        let mut posted = 0;
        // Accruals first: a refund only claws back a commission that was posted.
        for kind in [TransactionKind::Accrual, TransactionKind::Clawback] {
            loop {
                let sql = match kind {
                    TransactionKind::Accrual => {
                        "SELECT u.id, u.units, u.currency, r.id, r.referrer_id, r.program \
                         FROM usage u \
                         JOIN referrals r ON r.referred_id = u.account_id AND r.status = 'qualified' \
                         WHERE u.at >= r.referred_at \
                           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t \
                                           WHERE t.kind = 'accrual' AND t.source_id = u.id \
                                             AND t.referral_id = r.id) \
                         LIMIT $1"
                    }
                    _ => {
                        "SELECT f.id, f.units, u.currency, r.id, r.referrer_id, r.program \
                         FROM refunds f \
                         JOIN usage u ON u.id = f.usage_id \
                         JOIN referrals r ON r.referred_id = u.account_id AND r.status = 'qualified' \
                         WHERE EXISTS (SELECT 1 FROM ledger_transactions t \
                                       WHERE t.kind = 'accrual' AND t.source_id = u.id \
                                         AND t.referral_id = r.id) \
                           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t \
                                           WHERE t.kind = 'clawback' AND t.source_id = f.id \
                                             AND t.referral_id = r.id) \
                         LIMIT $1"
                    }
                };
                let rows: Vec<(String, i64, String, String, String, String)> = sqlx::query_as(sql)
                    .bind(ACCRUAL_PAGE)
                    .fetch_all(&mut **tx)
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let mut batch = Vec::with_capacity(rows.len());
                for (source_id, units, currency, referral_id, referrer, program) in rows {
                    let currency: Currency = parse_stored("currency", &currency)?;
                    let program: Program = parse_stored("program", &program)?;
                    let referrer: AccountId = parse_stored("account id", &referrer)?;
                    let terms = ProgramTerms::for_program(program);
                    let amount = Money::from_units(units, currency);
                    let split = match kind {
                        TransactionKind::Accrual => accrue(&terms, &amount)?,
                        _ => claw_back(&terms, &amount)?,
                    };
                    let txn = commission_transaction(kind, &referrer, program, &split)?;
                    batch.push((
                        TxnMeta {
                            id: format!("lt_{}", ulid::Ulid::generate()),
                            source_id: Some(source_id),
                            referral_id: Some(referral_id),
                            payout_id: None,
                        },
                        txn,
                    ));
                }
                posted += batch.len();
                insert_transactions(tx, &batch).await?;
            }
        }
        Ok(posted)
    }
}

/// The balanced postings of one commission (or clawback): the referrer's cashable and credit
/// books against the program's expense.
fn commission_transaction(
    kind: TransactionKind,
    referrer: &AccountId,
    program: Program,
    split: &Accrual,
) -> StoreResult<crate::domain::ledger::BalancedTransaction> {
    let total = split.total()?;
    Ok(TransactionDraft::new(kind, TransactionStatus::Posted)
        .post(
            Book::ReferrerCashable {
                account: referrer.clone(),
                program,
            },
            split.cashable,
        )
        .post(
            Book::ReferrerCredit {
                account: referrer.clone(),
                program,
            },
            split.credit,
        )
        .post(Book::CommissionExpense { program }, total.negate())
        .finish()?)
}
