//! Holding new payouts for review or a tax form (`domain::review`, `domain::tax::tax_flag`),
//! and letting the tax-held ones go when their form arrives.
//!
//! The facts are read set-based for a whole group of new payouts (a payout run's chunk, or a
//! withdrawal alone) where they are created, in the same transaction: a payout is either
//! written held with its flags or queued with its job, never in between.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::ledger::{TxnMeta, insert_transactions};
use super::payouts::{PAYOUT_COLUMNS, PayoutRow, payout_view};
use super::tax_holds::TaxTally;
use super::{Db, Store, StoreResult, Tx, from_millis, parse_code, parse_stored, to_millis};
use crate::domain::ids::{AccountId, PayoutId};
use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
use crate::domain::money::{Currency, Money};
use crate::domain::review::{Flag, ReviewFacts, Rule, Verdict, review};
use crate::domain::withdrawal::NewPayout;
use crate::storage::balance_views::HeldNote;
use crate::storage::sums::{join, wide_sum};
use crate::storage::{FlagView, HeldPayout};

/// Ids per `IN (...)` list: far below either backend's limit on bound values.
pub(crate) const IN_LIST: usize = 500;

impl Store {
    /// Raises the review and tax flags on `payouts` before they are written (a flagged one is
    /// created held). Reads nothing when no rule is on.
    pub(crate) async fn screen(&self, tx: &mut Tx, payouts: &mut [NewPayout]) -> StoreResult<()> {
        let tax = self.tax_rules();
        let mut tally = TaxTally::default();
        for group in payouts.chunks_mut(IN_LIST) {
            let reviewed = group.iter().any(|p| {
                self.programs()
                    .get(&p.program)
                    .is_some_and(|t| !t.review.is_off())
            });
            if reviewed {
                let facts = review_facts(tx, group).await?;
                for (p, facts) in group.iter_mut().zip(facts) {
                    if let Some(terms) = self.programs().get(&p.program) {
                        p.flags
                            .extend(review(&terms.review, p.amount, &p.destination, &facts));
                    }
                }
            }
            if !tax.is_off() {
                tally.screen(tx, tax, group).await?;
            }
        }
        Ok(())
    }
}

/// The review facts of each payout of `group`, in order.
async fn review_facts(tx: &mut Tx, group: &[NewPayout]) -> StoreResult<Vec<ReviewFacts>> {
    let payees: Vec<&str> = group.iter().map(|p| p.account.as_str()).collect();
    // Destinations are ASCII on every rail (`domain::destination`): both backends' lower()
    // folds them as this does.
    let destinations: Vec<String> = group
        .iter()
        .map(|p| p.destination.to_ascii_lowercase())
        .collect();
    let sharing = holders_of(tx, &destinations).await?;
    let pairs: Vec<(&str, &str)> = group
        .iter()
        .zip(&destinations)
        .map(|(p, d)| (p.rail.as_str(), d.as_str()))
        .collect();
    let paid = paid_destinations(tx, &pairs).await?;
    let linked = linked_referred(tx, &payees).await?;
    let spend = referred_spend(tx, &payees).await?;
    let mut out = Vec::with_capacity(group.len());
    for (p, destination) in group.iter().zip(&destinations) {
        let currency = p.amount.currency();
        let (spent, refunded) = spend
            .get(&(p.account.to_string(), currency))
            .copied()
            .unwrap_or((0, 0));
        let mut others: Vec<String> = sharing
            .get(destination)
            .map(|all| {
                all.iter()
                    .filter(|a| *a != p.account.as_str())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        others.sort();
        others.dedup();
        out.push(ReviewFacts {
            sharing: others,
            linked: linked.get(p.account.as_str()).cloned().unwrap_or_default(),
            destination_paid_before: paid
                .contains(&(p.rail.as_str().to_string(), destination.clone())),
            referred_spend: Money::from_total_units(spent, currency)?,
            referred_refunded: Money::from_total_units(refunded, currency)?,
        });
    }
    Ok(out)
}

pub(crate) fn in_list(q: &mut QueryBuilder<Db>, values: impl IntoIterator<Item = String>) {
    q.push("(");
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    list.push_unseparated(")");
}

/// Every account whose payout method (any rail) is one of `destinations` (lower case).
async fn holders_of(
    tx: &mut Tx,
    destinations: &[String],
) -> StoreResult<HashMap<String, Vec<String>>> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT lower(destination), account_id FROM payout_methods WHERE lower(destination) IN ",
    );
    in_list(&mut q, destinations.iter().cloned());
    let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for (destination, account) in rows {
        by.entry(destination).or_default().push(account);
    }
    Ok(by)
}

/// The (rail, destination) pairs among `pairs` that a payout was paid to (by the index on
/// rail and lower-case destination).
async fn paid_destinations(
    tx: &mut Tx,
    pairs: &[(&str, &str)],
) -> StoreResult<HashSet<(String, String)>> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT DISTINCT rail, lower(destination) FROM payouts WHERE status = 'paid' \
         AND (rail, lower(destination)) IN (",
    );
    q.push_values(pairs, |mut b, (rail, destination)| {
        b.push_bind(rail.to_string())
            .push_bind(destination.to_string());
    });
    q.push(")");
    let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
    Ok(rows.into_iter().collect())
}

/// The referred accounts of each payee linked to it, with how: an explicit link, the same
/// email, or the same payment method.
async fn linked_referred(
    tx: &mut Tx,
    payees: &[&str],
) -> StoreResult<HashMap<String, Vec<(String, String)>>> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT DISTINCT r.referrer_id, c.id, \
           CASE WHEN EXISTS (SELECT 1 FROM account_links l \
                             WHERE (l.account_a = p.id AND l.account_b = c.id) \
                                OR (l.account_a = c.id AND l.account_b = p.id)) THEN 'link' \
                WHEN p.email_normalized = c.email_normalized THEN 'email' \
                ELSE 'payment method' END \
         FROM referrals r JOIN accounts p ON p.id = r.referrer_id \
         JOIN accounts c ON c.id = r.referred_id \
         WHERE (p.email_normalized = c.email_normalized \
                OR p.payment_fingerprint = c.payment_fingerprint \
                OR EXISTS (SELECT 1 FROM account_links l \
                           WHERE (l.account_a = p.id AND l.account_b = c.id) \
                              OR (l.account_a = c.id AND l.account_b = p.id))) \
           AND r.referrer_id IN ",
    );
    in_list(&mut q, payees.iter().map(|p| p.to_string()));
    q.push(" ORDER BY 1, 2");
    let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
    let mut by: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (payee, referred, how) in rows {
        by.entry(payee).or_default().push((referred, how));
    }
    Ok(by)
}

/// The lifetime spend of each payee's referred accounts, and the part refunded, by currency
/// (stored units).
async fn referred_spend(
    tx: &mut Tx,
    payees: &[&str],
) -> StoreResult<HashMap<(String, Currency), (i128, i128)>> {
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT r.referrer_id, u.currency, {}, {} \
         FROM (SELECT DISTINCT referrer_id, referred_id FROM referrals WHERE referrer_id IN ",
        wide_sum("u.units"),
        wide_sum("(SELECT SUM(f.units) FROM refunds f WHERE f.usage_id = u.id)"),
    ));
    in_list(&mut q, payees.iter().map(|p| p.to_string()));
    q.push(") r JOIN usage u ON u.account_id = r.referred_id GROUP BY r.referrer_id, u.currency");
    let rows: Vec<(String, String, i64, i64, i64, i64)> =
        q.build_query_as().fetch_all(&mut **tx).await?;
    let mut by = HashMap::new();
    for (payee, currency, sh, sl, rh, rl) in rows {
        let currency: Currency = parse_stored("currency", &currency)?;
        by.insert((payee, currency), (join(sh, sl), join(rh, rl)));
    }
    Ok(by)
}

/// Writes the flags of new payouts (with their rows, in the caller's transaction).
pub(crate) async fn insert_flags<'a>(
    tx: &mut Tx,
    payouts: impl Iterator<Item = &'a NewPayout>,
    now: i64,
) -> StoreResult<()> {
    let flags: Vec<(&PayoutId, &Flag)> = payouts
        .flat_map(|p| p.flags.iter().map(move |f| (&p.id, f)))
        .collect();
    insert_flag_rows(tx, &flags, now).await
}

/// Writes flags raised at `now`, each on its payout.
pub(crate) async fn insert_flag_rows(
    tx: &mut Tx,
    flags: &[(&PayoutId, &Flag)],
    now: i64,
) -> StoreResult<()> {
    for chunk in flags.chunks(IN_LIST) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO payout_flags (payout_id, rule, evidence, raised_at) ",
        );
        q.push_values(chunk, |mut b, (id, f)| {
            b.push_bind(id.to_string())
                .push_bind(f.rule.code())
                .push_bind(f.evidence.clone())
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The rules whose flags still hold payout `id`.
pub(crate) async fn open_flags(tx: &mut Tx, id: &PayoutId) -> StoreResult<Vec<Rule>> {
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT rule FROM payout_flags WHERE payout_id = $1 AND cleared_at IS NULL ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    codes
        .iter()
        .map(|c| parse_code("review rule", c, Rule::from_code))
        .collect()
}

/// Records an operator's decision on the flags it answers (an approval: the review flags;
/// a rejection: all of them), and books the clawback a rejection asked for.
pub(crate) async fn decided(
    tx: &mut Tx,
    id: &PayoutId,
    verdict: Verdict,
    clawback: Option<Money>,
    (actor, reason): (&str, &str),
) -> StoreResult<()> {
    let tax: Vec<&str> = Rule::ALL
        .iter()
        .filter(|r| r.is_tax())
        .map(|r| r.code())
        .collect();
    let mut q = QueryBuilder::<Db>::new("UPDATE payout_flags SET cleared_at = ");
    q.push_bind(to_millis(crate::clock::now()))
        .push(", cleared_by = ")
        .push_bind(actor.to_string())
        .push(", decision = ")
        .push_bind(verdict.code())
        .push(", note = ")
        .push_bind(reason.to_string())
        .push(" WHERE cleared_at IS NULL AND payout_id = ")
        .push_bind(id.to_string());
    if verdict == Verdict::Approved {
        q.push(" AND rule NOT IN ");
        in_list(&mut q, tax.into_iter().map(str::to_string));
    }
    q.build().execute(&mut **tx).await?;
    if verdict == Verdict::Approved {
        // Sent when due: an approval answers the review, not a cooling-off still ahead.
        let now = to_millis(crate::clock::now());
        let queued = crate::domain::payout::PayoutStatus::Queued;
        super::tax_holds::queue_when_due(tx, id, queued, now, "approved").await?;
    }
    match clawback {
        Some(amount) => book_review_clawback(tx, id, amount).await,
        None => Ok(()),
    }
}

/// Takes a rejected payout's amount back from the payee's cashable balance into the
/// program's commission expense: a posted `clawback` named by the payout (one per payout),
/// outside any referral's stream, so accrual never recomputes it away.
///
/// It takes at most what is left once the hold is voided: a refund that already clawed the
/// same commissions back is not taken twice (a refund that comes later is met by this one,
/// `accrual::offset_review_clawbacks`).
async fn book_review_clawback(tx: &mut Tx, id: &PayoutId, amount: Money) -> StoreResult<()> {
    let (account, program): (String, String) =
        sqlx::query_as("SELECT account_id, program FROM payouts WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
    let left: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
         WHERE p.holder = $1 AND p.program = $2 AND p.book = 'referrer_cashable' \
           AND p.currency = $3 AND t.status <> 'voided'",
        wide_sum("p.units")
    )))
    .bind(&account)
    .bind(&program)
    .bind(amount.currency().code())
    .fetch_all(&mut **tx)
    .await?;
    let left = left.first().map_or(0, |(h, l)| join(*h, *l));
    let wanted = i128::from(amount.to_units()?);
    let taken = wanted.min(left.max(0));
    if taken == 0 {
        return Ok(());
    }
    let taken = Money::from_total_units(taken, amount.currency())?;
    let draft = TransactionDraft::new(TransactionKind::Clawback, TransactionStatus::Posted)
        .transfer(
            Book::ReferrerCashable {
                account: parse_stored("account id", &account)?,
                program: parse_stored("program", &program)?,
            },
            Book::CommissionExpense {
                program: parse_stored("program", &program)?,
            },
            taken,
        )
        .finish()?;
    let mut meta = TxnMeta::for_payout(format!("{id}-review-clawback"), id.to_string());
    meta.note = Some(format!(
        "rejected in review: {taken} of the commissions behind it clawed back"
    ));
    insert_transactions(tx, &[(meta, draft)]).await
}

/// Flag columns as stored: payout, rule, evidence, raised, cleared, by, decision, note.
type FlagRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The flags of `payouts`, every one (open and cleared), by payout, oldest first.
pub(crate) async fn flags_of(
    conn: &mut super::Conn,
    payouts: &[String],
) -> StoreResult<HashMap<String, Vec<FlagView>>> {
    let mut by: HashMap<String, Vec<FlagView>> = HashMap::new();
    for group in payouts.chunks(IN_LIST) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT payout_id, rule, evidence, raised_at, cleared_at, cleared_by, decision, note \
             FROM payout_flags WHERE payout_id IN ",
        );
        in_list(&mut q, group.iter().cloned());
        q.push(" ORDER BY id");
        let rows: Vec<FlagRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        for (payout, rule, evidence, raised, cleared, by_whom, decision, note) in rows {
            by.entry(payout).or_default().push(FlagView {
                rule: parse_code("review rule", &rule, Rule::from_code)?,
                evidence,
                raised_at: from_millis(raised),
                cleared_at: cleared.map(from_millis),
                cleared_by: by_whom,
                decision,
                note,
            });
        }
    }
    Ok(by)
}

impl Store {
    /// The review queue: held payouts, oldest first, each with its open flags; at most
    /// `limit`.
    pub async fn review_queue(&self, limit: u32) -> StoreResult<Vec<HeldPayout>> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE status = 'held' \
             ORDER BY created_at, id LIMIT $1"
        );
        let rows: Vec<PayoutRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let payouts = rows
            .into_iter()
            .map(payout_view)
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<String> = payouts.iter().map(|p| p.id.to_string()).collect();
        let mut conn = self.pool.acquire().await?;
        let mut flags = flags_of(&mut conn, &ids).await?;
        Ok(payouts
            .into_iter()
            .map(|payout| {
                let all = flags.remove(payout.id.as_str()).unwrap_or_default();
                let open = all.into_iter().filter(|f| f.cleared_at.is_none()).collect();
                HeldPayout {
                    payout,
                    flags: open,
                }
            })
            .collect())
    }
}

/// The held payouts of `account`, each with its open flags, for its balance.
pub(crate) async fn held_notes(
    conn: &mut super::Conn,
    account: &AccountId,
) -> StoreResult<Vec<HeldNote>> {
    let rows: Vec<(String, String, String, i64, String, String)> = sqlx::query_as(
        "SELECT o.id, o.program, o.currency, CAST(o.units AS BIGINT), f.rule, f.evidence \
         FROM payouts o JOIN payout_flags f ON f.payout_id = o.id AND f.cleared_at IS NULL \
         WHERE o.account_id = $1 AND o.status = 'held' ORDER BY o.created_at, o.id, f.id",
    )
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut notes: Vec<HeldNote> = Vec::new();
    for (id, program, currency, units, rule, evidence) in rows {
        let reason = format!("{rule}: {evidence}");
        if let Some(last) = notes.last_mut().filter(|n| n.payout.as_str() == id) {
            last.reasons.push(reason);
            continue;
        }
        notes.push(HeldNote {
            payout: parse_stored("payout id", &id)?,
            program: parse_stored("program", &program)?,
            amount: Money::from_units(units, parse_stored("currency", &currency)?),
            reasons: vec![reason],
        });
    }
    Ok(notes)
}
