//! Tax-form holds: new payouts judged against the payee's form on file
//! (`domain::tax::tax_flag`), and held ones judged again whenever a form or a country may have
//! changed, so a payout waits exactly as long as a form is missing: no longer (a form that
//! arrives releases it, whichever form it was held for), and never less.
//!
//! Cash counts toward the year's threshold as the tax report counts it: a paid payout in the
//! year its payment was confirmed, one still on its way in the year it will be paid (now).

use std::collections::HashMap;

use chrono::{Datelike, TimeZone, Utc};
use rust_decimal::Decimal;
use sqlx::QueryBuilder;

use super::payouts::{Actor, append_event};
use super::review::{IN_LIST, in_list};
use super::{
    Db, Store, StoreResult, Tx, WriteLock, enqueue_payout_job, lock_payouts, parse_code,
    parse_stored, to_millis,
};
use crate::domain::ids::{PayoutId, Rail};
use crate::domain::money::{Currency, Money};
use crate::domain::payout::PayoutStatus;
use crate::domain::review::Rule;
use crate::domain::tax::{Recheck, TaxFacts, TaxForm, TaxRules, recheck, tax_flag};
use crate::domain::transition::{self, Mover};
use crate::domain::withdrawal::NewPayout;
use crate::storage::sums::{join, wide_sum};

/// The payees' tax facts as screening goes, group by group: each payee is read once and its
/// cash grows with each of its payouts screened, so a payee whose payouts fall in two groups
/// is judged on all of them.
#[derive(Default)]
pub(crate) struct TaxTally {
    facts: HashMap<String, TaxFacts>,
}

impl TaxTally {
    /// Raises the tax flags of `group`, counting each payout toward its payee's cash.
    pub(crate) async fn screen(
        &mut self,
        tx: &mut Tx,
        rules: &TaxRules,
        group: &mut [NewPayout],
    ) -> StoreResult<()> {
        let mut unread: Vec<String> = group
            .iter()
            .map(|p| p.account.to_string())
            .filter(|a| !self.facts.contains_key(a))
            .collect();
        unread.sort();
        unread.dedup();
        self.facts.extend(tax_facts(tx, rules, &unread).await?);
        for p in group.iter_mut() {
            let Some(f) = self.facts.get_mut(p.account.as_str()) else {
                continue;
            };
            p.flags.extend(tax_flag(rules, p.rail, p.amount, f));
            if counts(rules, p.rail, p.amount) {
                f.cash_this_year += p.amount.amount();
            }
        }
        Ok(())
    }
}

/// Whether a payout counts toward the US threshold: US dollars on a rail that reports no
/// 1099 of its own.
fn counts(rules: &TaxRules, rail: Rail, amount: Money) -> bool {
    amount.currency() == Currency::Usd && !rules.exempt_rails.contains(&rail)
}

/// Each of `payees`' form, country and the US dollars paid (or on their way) this year.
async fn tax_facts(
    tx: &mut Tx,
    rules: &TaxRules,
    payees: &[String],
) -> StoreResult<HashMap<String, TaxFacts>> {
    let now = crate::clock::now();
    let year = now.year();
    let start = Utc
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, to_millis);
    let mut facts: HashMap<String, TaxFacts> = HashMap::new();
    for group in payees.chunks(IN_LIST) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT a.id, COALESCE(x.country, a.country), x.status FROM accounts a \
             LEFT JOIN tax_profiles x ON x.account_id = a.id WHERE a.id IN ",
        );
        in_list(&mut q, group.iter().cloned());
        let profiles: Vec<(String, Option<String>, Option<String>)> =
            q.build_query_as().fetch_all(&mut **tx).await?;
        for (account, country, form) in profiles {
            let form = match form {
                Some(code) => parse_code("tax form", &code, TaxForm::from_code)?,
                None => TaxForm::None,
            };
            let country = country.map(|c| c.to_ascii_uppercase());
            let cash_this_year = Decimal::ZERO;
            let f = TaxFacts {
                country,
                form,
                cash_this_year,
                year,
            };
            facts.insert(account, f);
        }
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT o.account_id, o.rail, {} FROM payouts o \
             JOIN ledger_transactions t ON t.id = o.hold_txn_id \
             WHERE o.currency = 'USD' AND o.status NOT IN ('failed', 'returned') \
               AND (t.status = 'pending' OR COALESCE(t.resolved_at, t.created_at) >= ",
            wide_sum("o.units")
        ));
        q.push_bind(start).push(") AND o.account_id IN ");
        in_list(&mut q, group.iter().cloned());
        q.push(" GROUP BY o.account_id, o.rail");
        let cash: Vec<(String, String, i64, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
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
    }
    Ok(facts)
}

/// Judges again the tax holds of the payees whose tax profile or account is among `records`,
/// whether it was written or re-sent unchanged. Returns how many payouts were queued.
pub(crate) async fn recheck_ingested(
    tx: &mut Tx,
    rules: &TaxRules,
    records: &[crate::ingest::Numbered],
) -> StoreResult<u64> {
    use crate::ingest::Record;
    let mut accounts: Vec<String> = records
        .iter()
        .filter_map(|n| match &n.record {
            Record::TaxProfile(t) => Some(t.account.to_string()),
            Record::Account(a) => Some(a.id.to_string()),
            _ => None,
        })
        .collect();
    accounts.sort();
    accounts.dedup();
    recheck_tax_holds(tx, rules, &accounts).await
}

/// A held payout's open tax flag: payout, payee, rail, amount (units, currency), flag id,
/// rule.
type OpenTaxFlag = (String, String, String, i64, String, i64, String);

/// Judges the open tax flags of `accounts`' held payouts again, on the forms and countries on
/// file now: a flag no longer owed is cleared (and the flag now owed, if another, raised),
/// and each held payout left without an open flag is queued. Returns how many were queued.
///
/// The payouts' locks are taken first, so an operator's decision on one of them waits for
/// this, or this for it, and neither leaves a payout held with nothing holding it.
pub(crate) async fn recheck_tax_holds(
    tx: &mut Tx,
    rules: &TaxRules,
    accounts: &[String],
) -> StoreResult<u64> {
    let now = to_millis(crate::clock::now());
    let mut released = 0;
    for group in accounts.chunks(IN_LIST) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT id FROM payouts WHERE status = 'held' AND account_id IN ",
        );
        in_list(&mut q, group.iter().cloned());
        let held: Vec<String> = q.build_query_scalar().fetch_all(&mut **tx).await?;
        if held.is_empty() {
            continue;
        }
        lock_payouts(tx, &held).await?;
        // A process with no tax rules set judges no form: the flags stand until one that has
        // them (or the form) says otherwise.
        if !rules.is_off() {
            rejudge(tx, rules, group, now).await?;
        }
        released += release_unflagged(tx, &held, now).await?;
    }
    Ok(released)
}

/// Clears the open tax flags of `accounts`' held payouts that are no longer owed, raising the
/// flag owed instead where there is one.
async fn rejudge(tx: &mut Tx, rules: &TaxRules, accounts: &[String], now: i64) -> StoreResult<()> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT o.id, o.account_id, o.rail, CAST(o.units AS BIGINT), o.currency, f.id, f.rule \
         FROM payouts o JOIN payout_flags f ON f.payout_id = o.id AND f.cleared_at IS NULL \
         WHERE o.status = 'held' AND f.rule IN ('w9_missing', 'w8_missing') \
           AND o.account_id IN ",
    );
    in_list(&mut q, accounts.iter().cloned());
    q.push(" ORDER BY o.id");
    let open: Vec<OpenTaxFlag> = q.build_query_as().fetch_all(&mut **tx).await?;
    let mut payees: Vec<String> = open.iter().map(|o| o.1.clone()).collect();
    payees.sort();
    payees.dedup();
    let facts = tax_facts(tx, rules, &payees).await?;
    for (payout, payee, rail, units, currency, flag, rule) in open {
        let Some(f) = facts.get(&payee) else {
            continue;
        };
        let rail: Rail = parse_stored("rail", &rail)?;
        let amount = Money::from_units(units, parse_stored("currency", &currency)?);
        let rule = parse_code("review rule", &rule, Rule::from_code)?;
        // Its own amount is in the payee's cash already: judged as when it was created.
        let mut f = f.clone();
        if counts(rules, rail, amount) {
            f.cash_this_year -= amount.amount();
        }
        if let Recheck::Cleared { note, instead } = recheck(rules, rail, amount, &f, rule) {
            clear_flag(tx, flag, &note, now).await?;
            if let Some(flag) = instead {
                let id: PayoutId = parse_stored("payout id", &payout)?;
                let new = [(&id, &flag)];
                super::review::insert_flag_rows(tx, &new, now).await?;
            }
        }
    }
    Ok(())
}

async fn clear_flag(tx: &mut Tx, flag: i64, note: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE payout_flags SET cleared_at = $2, cleared_by = 'platform', \
           decision = 'form_received', note = $3 WHERE id = $1 AND cleared_at IS NULL",
    )
    .bind(flag)
    .bind(now)
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues each of `held` (locked by the caller) that no open flag holds any more.
async fn release_unflagged(tx: &mut Tx, held: &[String], now: i64) -> StoreResult<u64> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT o.id FROM payouts o WHERE o.status = 'held' AND NOT EXISTS \
           (SELECT 1 FROM payout_flags f WHERE f.payout_id = o.id AND f.cleared_at IS NULL) \
         AND o.id IN ",
    );
    in_list(&mut q, held.iter().cloned());
    q.push(" ORDER BY o.id");
    let free: Vec<String> = q.build_query_scalar().fetch_all(&mut **tx).await?;
    for id in &free {
        let id: PayoutId = parse_stored("payout id", id)?;
        release(tx, &id, now).await?;
    }
    Ok(u64::try_from(free.len()).unwrap_or(u64::MAX))
}

/// Moves a held payout whose flags are all cleared to queued, with its job.
async fn release(tx: &mut Tx, id: &PayoutId, now: i64) -> StoreResult<()> {
    transition::check(PayoutStatus::Held, PayoutStatus::Queued, Mover::Platform)?;
    if !queue_when_due(tx, id, PayoutStatus::Held, now, "released").await? {
        return Ok(());
    }
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
    .await
}

/// Makes payout `id` queued (if it is `from`), due no earlier than a cooling-off time still
/// ahead, and enqueues its job for then. False when it was not `from`.
pub(crate) async fn queue_when_due(
    tx: &mut Tx,
    id: &PayoutId,
    from: PayoutStatus,
    now: i64,
    why: &str,
) -> StoreResult<bool> {
    let due: Option<i64> = sqlx::query_scalar(
        "UPDATE payouts SET status = 'queued', updated_at = $2, \
           next_action_at = CASE WHEN next_action_at > $2 THEN next_action_at ELSE $2 END \
         WHERE id = $1 AND status = $3 RETURNING next_action_at",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(from.code())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(due) = due else {
        return Ok(false);
    };
    let delay = u64::try_from((due - now).max(0)).unwrap_or(0);
    let delay = std::time::Duration::from_millis(delay);
    let key = format!("{why}-{}", crate::clock::ulid());
    enqueue_payout_job(tx, id, delay, &key).await?;
    Ok(true)
}

impl Store {
    /// The safety net behind the releases done as forms arrive: judges again the held
    /// payouts a form may answer (an open tax flag and a profile on file) and queues the held
    /// ones nothing holds any more. A form committed while a payout was being created, or an
    /// approval decided while a form arrived, ends here. Returns how many were queued.
    pub async fn settle_holds(&self) -> StoreResult<u64> {
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.account_id FROM payouts o WHERE o.status = 'held' AND ( \
               NOT EXISTS (SELECT 1 FROM payout_flags f \
                           WHERE f.payout_id = o.id AND f.cleared_at IS NULL) \
               OR (EXISTS (SELECT 1 FROM tax_profiles x WHERE x.account_id = o.account_id) \
                   AND EXISTS (SELECT 1 FROM payout_flags f WHERE f.payout_id = o.id \
                               AND f.cleared_at IS NULL \
                               AND f.rule IN ('w9_missing', 'w8_missing')))) \
             ORDER BY 1 LIMIT 5000",
        )
        .fetch_all(&self.pool)
        .await?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write(WriteLock::Sweep).await?;
        let released = recheck_tax_holds(&mut tx, self.tax_rules(), &candidates).await?;
        super::commit(tx).await?;
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::clock::Manual;
    use crate::domain::ids::{AccountId, ProgramId};

    fn payout(n: usize, account: &str, dollars: i64) -> NewPayout {
        NewPayout {
            id: PayoutId::parse(&format!("po_screen{n}")).unwrap(),
            account: AccountId::parse(account).unwrap(),
            program: ProgramId::parse("vast").unwrap(),
            rail: Rail::Stripe,
            destination: format!("acct_1{n}"),
            amount: Money::new(Decimal::from(dollars), Currency::Usd),
            idempotency_key: format!("k{n}"),
            not_before: None,
            reason: String::new(),
            source: "payout_run",
            flags: Vec::new(),
        }
    }

    /// A payee whose two payouts fall in different groups of a screening is judged on both:
    /// 1,500.00 then 1,000.00 passes the 2026 threshold of 2,000.00 without a W-9.
    #[tokio::test(flavor = "current_thread")]
    async fn a_payee_split_across_screening_groups_is_judged_on_all_its_payouts() {
        let start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let (_clock, _installed) = Manual::install(start.with_timezone(&Utc), 7);
        let (mut store, _guard) = super::super::super::test_store().await;
        store.set_tax_rules(TaxRules {
            gate: true,
            ..TaxRules::default()
        });
        let mut tx = store.begin_write(WriteLock::Run).await.unwrap();
        sqlx::query(
            "INSERT INTO accounts (id, created_at, email, email_normalized, content_hash, country) \
             VALUES ('p-us', 0, 'us@x.com', 'us@x.com', 'seed', 'US')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let mut payouts = vec![payout(0, "p-us", 1_500)];
        payouts.extend((1..IN_LIST).map(|n| payout(n, &format!("f{n}"), 1)));
        payouts.push(payout(IN_LIST, "p-us", 1_000));
        store.screen(&mut tx, &mut payouts).await.unwrap();
        assert!(payouts[0].flags.is_empty());
        let flags: Vec<Rule> = payouts[IN_LIST].flags.iter().map(|f| f.rule).collect();
        assert_eq!(flags, [Rule::W9Missing]);
    }
}
