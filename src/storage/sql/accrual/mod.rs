//! Turning facts into ledger entries: true up every earning stream whose facts changed, once
//! referrals are judged (`evidence.rs`); bonus draws are made and kept in `bonus.rs`.
//!
//! An ingest marks what it touched in `accrual_scope` (referred accounts and templates). For
//! those, one streaming pass over their usage (and one over their refunds) folds every charge
//! into per-stream tallies with the pure rules of `domain::program::earnings`; the ledger's
//! posted totals for the same streams come from one grouped query; `domain::program::trueup`
//! gives the difference, which is written as a few batched transactions. Replays post nothing,
//! late referrals and opt-ins collect what they are owed, and a refund claws back exactly what
//! its charge earned, even after that was withdrawn.

mod fresh;
mod maturing;
mod referrals;
mod review_offset;

pub(crate) use fresh::FreshCharge;
pub(crate) use maturing::{Maturing, maturing};
pub(super) use referrals::ReferralAcc;

use std::collections::HashMap;

use rust_decimal::Decimal;
use sqlx::QueryBuilder;

use super::ledger::{TxnMeta, insert_transactions};
use super::{
    BATCH_ROWS, Db, Store, StoreError, StoreResult, Tx, WriteLock, from_millis, parse_stored,
};
use crate::domain::ids::{AccountId, ProgramId};
use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
use crate::domain::money::{Money, UNIT_SCALE};
use crate::domain::program::earnings::{Stream, TemplateRun, template_earnings};
use crate::domain::program::trueup::{StreamTotals, true_up};
use crate::domain::program::{Program, ProgramSet};
use crate::storage::sums::{join, wide_sum};

/// Exact decimal of stored units.
pub(super) fn dec(units: i128) -> Decimal {
    Decimal::from_i128_with_scale(units, UNIT_SCALE)
}

/// What one stream should hold, and who it belongs to.
pub(super) struct Expected<'a> {
    pub program: &'a Program,
    pub beneficiary: AccountId,
    pub totals: StreamTotals,
    pub note: String,
}

impl Store {
    /// Marks referred accounts (`kind` "account") or templates ("template") for accrual.
    pub(super) async fn scope(
        tx: &mut Tx,
        kind: &'static str,
        ids: impl IntoIterator<Item = String>,
    ) -> StoreResult<()> {
        let ids: Vec<String> = ids.into_iter().collect();
        for chunk in ids.chunks(BATCH_ROWS) {
            let mut q = QueryBuilder::<Db>::new("INSERT INTO accrual_scope (kind, id) ");
            q.push_values(chunk, |mut b, id| {
                b.push_bind(kind).push_bind(id.clone());
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Scopes with a query: `select` yields (kind, id) rows.
    pub(super) async fn scope_query(tx: &mut Tx, select: &str, binds: &[&str]) -> StoreResult<()> {
        let sql = format!("INSERT INTO accrual_scope (kind, id) {select} ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }

    /// Re-accrues every stream under the loaded programs, in one transaction: after a change
    /// of configuration, or to check the ledger against the rules. Posts only differences, so
    /// on an up-to-date ledger it posts nothing. Returns the transactions posted.
    pub async fn reaccrue_all(&self) -> StoreResult<usize> {
        let mut tx = self.begin_write(WriteLock::Accrual).await?;
        Self::scope_query(
            &mut tx,
            "SELECT DISTINCT 'account', referred_id FROM referrals WHERE status <> 'pending'",
            &[],
        )
        .await?;
        Self::scope_query(
            &mut tx,
            "SELECT 'template', id FROM templates WHERE true",
            &[],
        )
        .await?;
        let posted = Self::accrue_scope(&mut tx, &self.programs, &[]).await?;
        tx.commit().await?;
        Ok(posted)
    }

    /// Trues up every stream in scope, accrues what `fresh` charges add (see `fresh.rs`),
    /// and empties the scope. Returns the transactions posted.
    pub(super) async fn accrue_scope(
        tx: &mut Tx,
        programs: &ProgramSet,
        fresh: &[FreshCharge],
    ) -> StoreResult<usize> {
        // Fresh first: it moves the accounts it cannot settle on its own into the full pass.
        let added = Self::fresh_streams(tx, programs, fresh).await?;
        let mut expected: HashMap<(Stream, String), Expected<'_>> = HashMap::new();
        let mut posted = HashMap::new();
        // The full pass's queries are skipped when it has nothing in scope: most chunks of a
        // usage file, whose charges are all fresh.
        let in_scope: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM accrual_scope WHERE kind <> 'fresh'")
                .fetch_one(&mut **tx)
                .await?;
        if in_scope > 0 {
            Self::referral_streams(tx, programs, &mut expected).await?;
            Self::creator_streams(tx, programs, &mut expected).await?;
            posted = Self::posted_in_scope(tx, "account").await?;
        }
        let posted_count = Self::post_true_ups(tx, programs, expected, posted, added).await?;
        sqlx::query("DELETE FROM accrual_scope")
            .execute(&mut **tx)
            .await?;
        Ok(posted_count)
    }

    async fn creator_streams<'p>(
        tx: &mut Tx,
        programs: &'p ProgramSet,
        expected: &mut HashMap<(Stream, String), Expected<'p>>,
    ) -> StoreResult<()> {
        let templates: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT t.id, t.program, t.creator_id FROM accrual_scope s \
             JOIN templates t ON t.id = s.id WHERE s.kind = 'template'",
        )
        .fetch_all(&mut **tx)
        .await?;
        for (template, program_id, creator) in templates {
            let Some(program) = programs.get_str(&program_id) else {
                continue;
            };
            let Some(terms) = program.creator() else {
                continue;
            };
            #[allow(clippy::type_complexity)]
            let rows: Vec<(String, i64, String, i64, i64, i64)> = sqlx::query_as(
                "SELECT u.account_id, u.at, u.category, CAST(u.units AS BIGINT), u.runtime_secs, \
                   CAST(COALESCE((SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id), 0) AS BIGINT) \
                 FROM usage u WHERE u.template_id = $1 AND u.currency = $2 ORDER BY u.at, u.id",
            )
            .bind(&template)
            .bind(program.currency.code())
            .fetch_all(&mut **tx)
            .await?;
            let mut runs = Vec::with_capacity(rows.len());
            for (account, at, category, units, runtime, refunded) in &rows {
                runs.push(TemplateRun {
                    account: account.as_str(),
                    at: from_millis(*at),
                    category: parse_stored("usage category", category)?,
                    amount: dec(i128::from(*units)),
                    refunded: dec(i128::from(*refunded)),
                    runtime_secs: u64::try_from(*runtime).unwrap_or(0),
                });
            }
            let e = template_earnings(terms, &creator, &runs);
            let hours = Decimal::from(e.runtime_secs) / Decimal::from(3600);
            expected.insert(
                (Stream::Creator, template.clone()),
                Expected {
                    program,
                    beneficiary: parse_stored("account id", &creator)?,
                    totals: StreamTotals {
                        earned: e.earned,
                        clawed: e.clawed,
                    },
                    note: format!(
                        "template {template}: {} h of runtime{}; {} of spend earns",
                        hours.round_dp(2),
                        e.qualified_at
                            .map(|t| format!(", qualified at {}", t.to_rfc3339()))
                            .unwrap_or_else(|| ", below the threshold".into()),
                        Money::new(e.earning_spend, program.currency),
                    ),
                },
            );
        }
        Ok(())
    }

    /// What the ledger holds for every stream in scope: (stream, subject) -> totals, with the
    /// program of the postings. `kind` is the scope of referred accounts ("account" or
    /// "fresh"); templates in scope come with "account".
    pub(super) async fn posted_in_scope(
        tx: &mut Tx,
        kind: &'static str,
    ) -> StoreResult<HashMap<(Stream, String), Posted>> {
        // A stream's lifetime total can pass what one stored amount holds: summed exactly.
        let rows: Vec<(String, String, String, String, i64, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT t.stream, t.subject, t.kind, p.program, {sum} \
             FROM accrual_scope s \
             JOIN referrals r ON r.referred_id = s.id \
             JOIN ledger_transactions t ON t.subject = r.id \
             JOIN ledger_postings p ON p.txn_id = t.id AND p.book = 'commission_expense' \
             WHERE s.kind = $1 AND t.stream IS NOT NULL \
             GROUP BY t.stream, t.subject, t.kind, p.program \
             UNION ALL \
             SELECT t.stream, t.subject, t.kind, p.program, {sum} \
             FROM accrual_scope s \
             JOIN ledger_transactions t ON t.subject = s.id AND t.stream = 'creator' \
             JOIN ledger_postings p ON p.txn_id = t.id AND p.book = 'commission_expense' \
             WHERE s.kind = 'template' AND $1 = 'account' \
             GROUP BY t.stream, t.subject, t.kind, p.program",
                sum = wide_sum("-p.units")
            )))
            .bind(kind)
            .fetch_all(&mut **tx)
            .await?;
        let mut posted: HashMap<(Stream, String), Posted> = HashMap::new();
        for (stream, subject, kind, program, high, low) in rows {
            let units = join(high, low);
            let stream = Stream::from_code(&stream)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown stream {stream:?}")))?;
            let entry = posted.entry((stream, subject)).or_insert_with(|| Posted {
                program: program.clone(),
                totals: StreamTotals::default(),
            });
            match kind.as_str() {
                "accrual" => entry.totals.earned += dec(units),
                _ => entry.totals.clawed -= dec(units),
            }
        }
        Ok(posted)
    }

    /// Posts what brings each stream in `expected` to its totals, trues streams posted but
    /// no longer expected down to zero, and accrues what `added` (fresh charges) earned.
    async fn post_true_ups(
        tx: &mut Tx,
        programs: &ProgramSet,
        mut expected: HashMap<(Stream, String), Expected<'_>>,
        posted: HashMap<(Stream, String), Posted>,
        added: HashMap<(Stream, String), Expected<'_>>,
    ) -> StoreResult<usize> {
        // Streams posted before but no longer expected (a referral disqualified later, a
        // program whose terms changed) are trued down to zero with their own beneficiary.
        let orphans: Vec<(Stream, String)> = posted
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .cloned()
            .collect();
        for key in orphans {
            let Some(p) = posted.get(&key) else { continue };
            let Some(program) = programs.get_str(&p.program) else {
                continue;
            };
            let Some(beneficiary) = Self::beneficiary_of(tx, &key).await? else {
                continue;
            };
            expected.insert(
                key,
                Expected {
                    program,
                    beneficiary,
                    totals: StreamTotals::default(),
                    note: "the facts no longer earn this stream anything".into(),
                },
            );
        }

        let mut batch = Vec::new();
        let mut clawed = review_offset::Clawed::new();
        let mut keys: Vec<&(Stream, String)> = expected.keys().collect();
        keys.sort();
        for key in keys {
            let e = &expected[key];
            let before = posted.get(key).map(|p| p.totals).unwrap_or_default();
            let delta = true_up(before, e.totals);
            note_clawed(&mut clawed, e, delta);
            push_delta(&mut batch, key, e, delta)?;
        }
        // Fresh charges only add earnings to a ledger that is up to date: the delta is theirs.
        let mut keys: Vec<&(Stream, String)> = added.keys().collect();
        keys.sort();
        for key in keys {
            let e = &added[key];
            note_clawed(&mut clawed, e, e.totals);
            push_delta(&mut batch, key, e, e.totals)?;
        }
        if !clawed.is_empty() {
            batch.extend(review_offset::offset_review_clawbacks(tx, &clawed).await?);
        }
        insert_transactions(tx, &batch).await?;
        Ok(batch.len())
    }

    async fn beneficiary_of(
        tx: &mut Tx,
        (stream, subject): &(Stream, String),
    ) -> StoreResult<Option<AccountId>> {
        let sql = match stream {
            Stream::Creator => "SELECT creator_id FROM templates WHERE id = $1",
            Stream::BonusReferred => "SELECT referred_id FROM referrals WHERE id = $1",
            _ => "SELECT referrer_id FROM referrals WHERE id = $1",
        };
        let id: Option<String> = sqlx::query_scalar(sql)
            .bind(subject)
            .fetch_optional(&mut **tx)
            .await?;
        id.map(|i| parse_stored("account id", &i)).transpose()
    }
}

pub(super) struct Posted {
    program: String,
    pub totals: StreamTotals,
}

/// Adds the cashable part of what `delta` claws back to its payee's tally.
fn note_clawed(clawed: &mut review_offset::Clawed, e: &Expected<'_>, delta: StreamTotals) {
    if delta.clawed > Decimal::ZERO {
        let (cashable, _) = e.program.split(delta.clawed);
        let key = (
            e.beneficiary.clone(),
            e.program.id.clone(),
            e.program.currency,
        );
        *clawed.entry(key).or_default() += cashable;
    }
}

/// The transactions of one stream's delta: an accrual and a clawback, each in pieces under
/// the per-amount cap; nothing for a zero.
fn push_delta(
    batch: &mut Vec<(TxnMeta, crate::domain::ledger::BalancedTransaction)>,
    key: &(Stream, String),
    e: &Expected<'_>,
    delta: StreamTotals,
) -> StoreResult<()> {
    for (kind, amount) in [
        (TransactionKind::Accrual, delta.earned),
        (TransactionKind::Clawback, -delta.clawed),
    ] {
        for piece in pieces_under_cap(amount) {
            let txn = commission_transaction(kind, &e.beneficiary, e.program, piece)?;
            batch.push((
                TxnMeta {
                    id: format!("lt_{}", crate::clock::ulid()),
                    source_id: None,
                    referral_id: (key.0 != Stream::Creator).then(|| key.1.clone()),
                    payout_id: None,
                    stream: Some(key.0.code()),
                    subject: Some(key.1.clone()),
                    note: Some(e.note.clone()),
                },
                txn,
            ));
        }
    }
    Ok(())
}

/// `amount` as pieces of at most the per-amount cap (whole units, so splitting a piece into
/// its cashable and credit parts adds no decimals), summing to it exactly; none when zero.
fn pieces_under_cap(amount: Decimal) -> Vec<Decimal> {
    let max = Money::max_single_amount().trunc();
    let mut left = amount;
    let mut pieces = Vec::new();
    while left.abs() > max {
        let piece = if left.is_sign_negative() { -max } else { max };
        pieces.push(piece);
        left -= piece;
    }
    if !left.is_zero() {
        pieces.push(left);
    }
    pieces
}

/// The balanced postings of one commission (or clawback, when `amount` is negative): the
/// beneficiary's cashable and credit books against the program's expense.
fn commission_transaction(
    kind: TransactionKind,
    beneficiary: &AccountId,
    program: &Program,
    amount: Decimal,
) -> StoreResult<crate::domain::ledger::BalancedTransaction> {
    let (cashable, credit) = program.split(amount);
    let m = |a: Decimal| Money::new(a, program.currency);
    let id: ProgramId = program.id.clone();
    Ok(TransactionDraft::new(kind, TransactionStatus::Posted)
        .post(
            Book::ReferrerCashable {
                account: beneficiary.clone(),
                program: id.clone(),
            },
            m(cashable),
        )
        .post(
            Book::ReferrerCredit {
                account: beneficiary.clone(),
                program: id.clone(),
            },
            m(credit),
        )
        .post(Book::CommissionExpense { program: id }, m(-amount))
        .finish()?)
}
