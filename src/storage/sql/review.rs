//! Holding new payouts for review or a tax form (`domain::review`, `domain::tax::tax_flag`),
//! and letting the tax-held ones go when their form arrives.
//!
//! The facts are read set-based for a whole group of new payouts (a payout run's chunk, or a
//! withdrawal alone) where they are created, in the same transaction: a payout is either
//! written held with its flags or queued with its job, never in between.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, TimeZone, Utc};
use rust_decimal::Decimal;
use sqlx::QueryBuilder;

use super::ledger::{TxnMeta, insert_transactions};
use super::payouts::{Actor, PAYOUT_COLUMNS, PayoutRow, append_event, payout_view};
use super::{
    Db, Store, StoreResult, Tx, enqueue_payout_job, from_millis, parse_code, parse_stored,
    to_millis,
};
use crate::domain::ids::{AccountId, PayoutId, Rail};
use crate::domain::ledger::{Book, TransactionDraft, TransactionKind, TransactionStatus};
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::review::{ReviewFacts, Rule, Verdict, review};
use crate::domain::tax::{TaxFacts, TaxForm, TaxRules, tax_flag};
use crate::domain::transition::{self, Mover};
use crate::domain::withdrawal::NewPayout;
use crate::storage::balance_views::HeldNote;
use crate::storage::sums::{join, wide_sum};
use crate::storage::{FlagView, HeldPayout};

/// Ids per `IN (...)` list: far below either backend's limit on bound values.
const IN_LIST: usize = 500;

impl Store {
    /// Raises the review and tax flags on `payouts` before they are written (a flagged one is
    /// created held). Reads nothing when no rule is on.
    pub(crate) async fn screen(&self, tx: &mut Tx, payouts: &mut [NewPayout]) -> StoreResult<()> {
        let tax = self.tax_rules();
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
                screen_tax(tx, tax, group).await?;
            }
        }
        Ok(())
    }
}

/// The review facts of each payout of `group`, in order.
async fn review_facts(tx: &mut Tx, group: &[NewPayout]) -> StoreResult<Vec<ReviewFacts>> {
    let payees: Vec<&str> = group.iter().map(|p| p.account.as_str()).collect();
    let destinations: Vec<String> = group.iter().map(|p| p.destination.to_lowercase()).collect();
    let sharing = holders_of(tx, &destinations).await?;
    let paid = paid_destinations(tx, &destinations).await?;
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

fn in_list(q: &mut QueryBuilder<Db>, values: impl IntoIterator<Item = String>) {
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

/// (rail, destination) pairs among `destinations` that a payout was paid to.
async fn paid_destinations(
    tx: &mut Tx,
    destinations: &[String],
) -> StoreResult<HashSet<(String, String)>> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT DISTINCT rail, lower(destination) FROM payouts WHERE status = 'paid' \
         AND lower(destination) IN ",
    );
    in_list(&mut q, destinations.iter().cloned());
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

/// Raises the tax flags of `group`: each payee's form and country, and the US dollars it was
/// paid (or is being paid) this year on rails that are not exempt, counting the group's own
/// earlier payouts as it goes.
async fn screen_tax(tx: &mut Tx, rules: &TaxRules, group: &mut [NewPayout]) -> StoreResult<()> {
    let now = crate::clock::now();
    let year = now.year();
    let start = Utc
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, to_millis);
    let mut payees: Vec<String> = group.iter().map(|p| p.account.to_string()).collect();
    payees.sort();
    payees.dedup();
    let mut q = QueryBuilder::<Db>::new(
        "SELECT a.id, COALESCE(x.country, a.country), x.status FROM accounts a \
         LEFT JOIN tax_profiles x ON x.account_id = a.id WHERE a.id IN ",
    );
    in_list(&mut q, payees.iter().cloned());
    let profiles: Vec<(String, Option<String>, Option<String>)> =
        q.build_query_as().fetch_all(&mut **tx).await?;
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT account_id, rail, {} FROM payouts WHERE currency = 'USD' \
         AND status NOT IN ('failed', 'returned') AND created_at >= ",
        wide_sum("units")
    ));
    q.push_bind(start).push(" AND account_id IN ");
    in_list(&mut q, payees.iter().cloned());
    q.push(" GROUP BY account_id, rail");
    let cash: Vec<(String, String, i64, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
    let mut facts: HashMap<String, TaxFacts> = HashMap::new();
    for (account, country, form) in profiles {
        let form = match form {
            Some(code) => parse_code("tax form", &code, TaxForm::from_code)?,
            None => TaxForm::None,
        };
        let country = country.map(|c| c.to_ascii_uppercase());
        let cash_this_year = Decimal::ZERO;
        facts.insert(
            account,
            TaxFacts {
                country,
                form,
                cash_this_year,
                year,
            },
        );
    }
    for (account, rail, high, low) in cash {
        let rail: Rail = parse_stored("rail", &rail)?;
        if rules.exempt_rails.contains(&rail) {
            continue;
        }
        let paid = Money::from_total_units(join(high, low), Currency::Usd)?;
        if let Some(f) = facts.get_mut(&account) {
            f.cash_this_year += paid.amount();
        }
    }
    for p in group.iter_mut() {
        let Some(f) = facts.get_mut(p.account.as_str()) else {
            continue;
        };
        p.flags.extend(tax_flag(rules, p.rail, p.amount, f));
        if p.amount.currency() == Currency::Usd && !rules.exempt_rails.contains(&p.rail) {
            f.cash_this_year += p.amount.amount();
        }
    }
    Ok(())
}

/// Writes the flags of new payouts (with their rows, in the caller's transaction).
pub(crate) async fn insert_flags<'a>(
    tx: &mut Tx,
    payouts: impl Iterator<Item = &'a NewPayout>,
    now: i64,
) -> StoreResult<()> {
    let flags: Vec<(&PayoutId, &crate::domain::review::Flag)> = payouts
        .flat_map(|p| p.flags.iter().map(move |f| (&p.id, f)))
        .collect();
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

/// Releases what the tax profiles among `records` that were written (`written`, by line)
/// now answer. Returns how many payouts were released.
pub(crate) async fn release_by_forms(
    tx: &mut Tx,
    records: &[crate::ingest::Numbered],
    written: &HashSet<usize>,
) -> StoreResult<u64> {
    let forms: Vec<String> = records
        .iter()
        .filter(|n| written.contains(&n.line))
        .filter_map(|n| match &n.record {
            crate::ingest::Record::TaxProfile(t) => Some(t.account.to_string()),
            _ => None,
        })
        .collect();
    release_tax_holds(tx, &forms).await
}

/// Clears the tax flags the forms on file of `accounts` now meet, and queues each of their
/// held payouts left with no open flag. Returns how many were released.
async fn release_tax_holds(tx: &mut Tx, accounts: &[String]) -> StoreResult<u64> {
    let now = to_millis(crate::clock::now());
    let mut released = 0;
    for group in accounts.chunks(IN_LIST) {
        for (rule, forms) in [
            (Rule::W9Missing, "('w9')"),
            (Rule::W8Missing, "('w8ben', 'w8bene')"),
        ] {
            let mut q = QueryBuilder::<Db>::new("UPDATE payout_flags SET cleared_at = ");
            q.push_bind(now)
                .push(", cleared_by = 'platform', decision = 'form_received', note = ")
                .push_bind(format!(
                    "{} on file",
                    match rule {
                        Rule::W9Missing => "a W-9",
                        _ => "a W-8BEN or W-8BEN-E",
                    }
                ))
                .push(" WHERE cleared_at IS NULL AND rule = ")
                .push_bind(rule.code())
                .push(format!(
                    " AND payout_id IN (SELECT o.id FROM payouts o \
                       JOIN tax_profiles x ON x.account_id = o.account_id \
                       WHERE o.status = 'held' AND x.status IN {forms} AND o.account_id IN "
                ));
            in_list(&mut q, group.iter().cloned());
            q.push(")");
            q.build().execute(&mut **tx).await?;
        }
        let mut q = QueryBuilder::<Db>::new(
            "SELECT o.id FROM payouts o WHERE o.status = 'held' AND NOT EXISTS \
               (SELECT 1 FROM payout_flags f WHERE f.payout_id = o.id AND f.cleared_at IS NULL) \
             AND o.account_id IN ",
        );
        in_list(&mut q, group.iter().cloned());
        q.push(" ORDER BY o.id");
        let free: Vec<String> = q.build_query_scalar().fetch_all(&mut **tx).await?;
        for id in free {
            let id: PayoutId = parse_stored("payout id", &id)?;
            release(tx, &id, now).await?;
            released += 1;
        }
    }
    Ok(released)
}

/// Moves a held payout whose flags are all cleared to queued, with its job.
async fn release(tx: &mut Tx, id: &PayoutId, now: i64) -> StoreResult<()> {
    transition::check(PayoutStatus::Held, PayoutStatus::Queued, Mover::Platform)?;
    let wait: Option<i64> = sqlx::query_scalar(
        "UPDATE payouts SET status = 'queued', updated_at = $2, \
           next_action_at = CASE WHEN next_action_at > $2 THEN next_action_at ELSE $2 END \
         WHERE id = $1 AND status = 'held' RETURNING next_action_at",
    )
    .bind(id.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(wait) = wait else {
        return Ok(());
    };
    let actor = Actor {
        worker: None,
        source: "platform",
    };
    let line = "released: the tax form it waited for is on file";
    append_event(
        tx,
        id,
        Some(PayoutStatus::Held),
        PayoutStatus::Queued,
        None,
        actor,
        line,
    )
    .await?;
    let delay = (wait - now).max(0);
    let delay = std::time::Duration::from_millis(u64::try_from(delay).unwrap_or(0));
    enqueue_payout_job(tx, id, delay, &format!("released-{}", crate::clock::ulid())).await
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
    match clawback {
        Some(amount) => book_review_clawback(tx, id, amount).await,
        None => Ok(()),
    }
}

/// Takes a rejected payout's amount back from the payee's cashable balance into the
/// program's commission expense: a posted `clawback` named by the payout (one per payout),
/// outside any referral's stream, so accrual never recomputes it away.
async fn book_review_clawback(tx: &mut Tx, id: &PayoutId, amount: Money) -> StoreResult<()> {
    let (account, program): (String, String) =
        sqlx::query_as("SELECT account_id, program FROM payouts WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
    let draft = TransactionDraft::new(TransactionKind::Clawback, TransactionStatus::Posted)
        .transfer(
            Book::ReferrerCashable {
                account: parse_stored("account id", &account)?,
                program: parse_stored("program", &program)?,
            },
            Book::CommissionExpense {
                program: parse_stored("program", &program)?,
            },
            amount,
        )
        .finish()?;
    let mut meta = TxnMeta::for_payout(format!("{id}-review-clawback"), id.to_string());
    meta.note = Some("rejected in review: the commissions behind it clawed back".into());
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
