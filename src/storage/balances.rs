//! Balances, derived from postings every time (never stored), with the eligibility verdict.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::SqliteConnection;

use super::affiliate::paying_referrals;
use super::{StoreError, StoreResult, from_millis, parse_stored};
use crate::domain::eligibility::{CashOutFacts, Ineligible, cash_out_eligibility, max_payable};
use crate::domain::ids::{AccountId, ProgramId, Rail};
use crate::domain::money::{Currency, Money};
use crate::domain::program::{ProgramSet, RewardKind};
use crate::domain::referral::Disqualification;

/// One program's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramBalance {
    pub program: ProgramId,
    /// referral, affiliate, creator or bonus; `None` when the program is no longer configured.
    pub kind: Option<&'static str>,
    /// Whether the program pays credit or cash.
    pub reward: Option<RewardKind>,
    pub currency: Currency,
    /// Lifetime referral earnings: cashable and credit parts, net of clawbacks.
    pub earned: Money,
    /// The cashable part of `earned`.
    pub cashable: Money,
    /// The part that stays on the platform as credit.
    pub credit: Money,
    /// Paid out (provider confirmed).
    pub withdrawn: Money,
    /// Held by payouts not yet confirmed.
    pub pending: Money,
    /// Cashable minus withdrawn minus pending, at full precision.
    pub available: Money,
    /// What a withdrawal may ask for now: `available` rounded down to the minor unit, or zero
    /// when not eligible.
    pub payable_now: Money,
    pub lifetime_spend: Money,
    pub eligible: bool,
    /// Why not, when not eligible.
    pub reason: Option<String>,
    /// The rails that may pay this program's cash.
    pub rails: Vec<Rail>,
}

/// Where a referrer stands with an affiliate upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffiliateStatus {
    pub program: ProgramId,
    pub referral_program: ProgramId,
    /// Referred users with positive spend, now (or when the opt-in was accepted).
    pub paying_referrals: u32,
    pub required: u32,
    pub opted_in_at: Option<chrono::DateTime<chrono::Utc>>,
    pub can_opt_in: bool,
    /// The state in words.
    pub note: String,
}

/// A referral that earns nothing, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferralNote {
    pub program: ProgramId,
    pub referred: String,
    pub status: String,
    pub template_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountBalance {
    pub account: AccountId,
    pub has_rented: bool,
    pub hosted_machines: bool,
    pub programs: Vec<ProgramBalance>,
    /// Affiliate upgrades open to this account (it refers in their referral program).
    pub affiliate: Vec<AffiliateStatus>,
    /// Referrals by this account that do not earn (disqualified or still pending).
    pub non_earning_referrals: Vec<ReferralNote>,
}

impl AccountBalance {
    pub fn program(&self, program: &str, currency: Currency) -> Option<&ProgramBalance> {
        self.programs
            .iter()
            .find(|p| p.program.as_str() == program && p.currency == currency)
    }
}

/// Loads an account's balance. Works on a pooled connection or inside a transaction.
pub async fn load_balance(
    conn: &mut SqliteConnection,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<AccountBalance> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT hosted_machines FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let rows: Vec<(String, String, String, i64, i64, i64, i64)> = sqlx::query_as(
        sqlx::AssertSqlSafe(BOOK_SUMS.replace("{filter}", "AND p.holder = $1")),
    )
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let sums: Vec<(String, String, i64, i64, i64, i64)> = rows
        .into_iter()
        .map(|(_, p, c, a, b, w, h)| (p, c, a, b, w, h))
        .collect();
    if known.is_none() && sums.is_empty() {
        return Err(StoreError::UnknownAccount(account.to_string()));
    }
    let spend_rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT u.currency, SUM(u.units) - COALESCE(SUM(r.refunded), 0) FROM usage u \
         LEFT JOIN (SELECT usage_id, SUM(units) AS refunded FROM refunds GROUP BY usage_id) r \
           ON r.usage_id = u.id \
         WHERE u.account_id = $1 GROUP BY u.currency",
    )
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut spend: BTreeMap<Currency, Money> = BTreeMap::new();
    for (currency, units) in spend_rows {
        let currency: Currency = parse_stored("currency", &currency)?;
        spend.insert(currency, Money::from_units(units, currency));
    }
    let has_rented = !spend.is_empty();
    let hosted_machines = known.unwrap_or(0) != 0;

    let mut balances = Vec::with_capacity(sums.len());
    for (program, currency, cashable, credit, withdrawn, pending) in sums {
        let program: ProgramId = parse_stored("program", &program)?;
        let currency: Currency = parse_stored("currency", &currency)?;
        let lifetime_spend = spend
            .get(&currency)
            .copied()
            .unwrap_or(Money::zero(currency));
        let sums = BookSums {
            cashable,
            credit,
            withdrawn,
            pending,
        };
        let (balance, _) = assess(
            programs,
            program,
            currency,
            sums,
            lifetime_spend,
            has_rented,
            hosted_machines,
        )?;
        balances.push(balance);
    }

    let notes: Vec<ReferralRow> = sqlx::query_as(
        "SELECT program, referred_id, status, disqualification, template_id FROM referrals \
         WHERE referrer_id = $1 AND status <> 'qualified' ORDER BY referred_at, id",
    )
    .bind(account.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut non_earning_referrals = Vec::with_capacity(notes.len());
    for (program, referred, status, reason, template_id) in notes {
        let reason = match reason.as_deref().and_then(Disqualification::from_code) {
            Some(d) => d.explain().to_string(),
            None => "waiting for both accounts' records before the referral can be judged".into(),
        };
        non_earning_referrals.push(ReferralNote {
            program: parse_stored("program", &program)?,
            referred,
            status,
            template_id,
            reason,
        });
    }

    let affiliate = affiliate_statuses(conn, programs, account).await?;
    Ok(AccountBalance {
        account: account.clone(),
        has_rented,
        hosted_machines,
        programs: balances,
        affiliate,
        non_earning_referrals,
    })
}

/// The affiliate upgrades of every referral program this account refers in.
async fn affiliate_statuses(
    conn: &mut SqliteConnection,
    programs: &ProgramSet,
    account: &AccountId,
) -> StoreResult<Vec<AffiliateStatus>> {
    let referring: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT program FROM referrals WHERE referrer_id = $1")
            .bind(account.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let mut out = Vec::new();
    for referral_program in referring {
        let Some(affiliate) = programs
            .get_str(&referral_program)
            .and_then(|p| programs.affiliate_of(&p.id))
        else {
            continue;
        };
        let Some(terms) = affiliate.affiliate() else {
            continue;
        };
        let enrolled: Option<(i64, i64)> = sqlx::query_as(
            "SELECT opted_in_at, paying_referrals FROM affiliate_enrollments              WHERE program = $1 AND account_id = $2",
        )
        .bind(affiliate.id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let now = chrono::Utc::now();
        let count = paying_referrals(conn, &referral_program, account.as_str(), now).await?;
        let required = terms.min_paying_referrals;
        let (opted_in_at, can_opt_in, note) = match enrolled {
            Some((at, _)) => {
                let at = from_millis(at);
                (
                    Some(at),
                    false,
                    format!(
                        "opted in at {}: spend within each referred user's window earns {} cash (permanent)",
                        at.to_rfc3339(),
                        affiliate.id
                    ),
                )
            }
            None if count >= required => (
                None,
                true,
                format!(
                    "may opt in: {count} paying referred users (needs {required}); `payouts affiliate opt-in {account}`; the choice is permanent"
                ),
            ),
            None => (
                None,
                false,
                format!("cannot opt in yet: {count} paying referred users, needs {required}"),
            ),
        };
        out.push(AffiliateStatus {
            program: affiliate.id.clone(),
            referral_program: parse_stored("program", &referral_program)?,
            paying_referrals: count,
            required,
            opted_in_at,
            can_opt_in,
            note,
        });
    }
    Ok(out)
}

/// A payee's book totals in one program and currency, in stored units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BookSums {
    pub cashable: i64,
    pub credit: i64,
    pub withdrawn: i64,
    pub pending: i64,
}

/// The SQL that sums a payee's books per program and currency; `{filter}` narrows it.
pub(crate) const BOOK_SUMS: &str = "SELECT p.holder, p.program, p.currency, \
   COALESCE(SUM(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('accrual', 'clawback') THEN p.units END), 0), \
   COALESCE(SUM(CASE WHEN p.book = 'referrer_credit' THEN p.units END), 0), \
   COALESCE(SUM(CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('payout', 'payout_return', 'payout_correction') AND t.status = 'posted' THEN -p.units END), 0), \
   COALESCE(SUM(CASE WHEN p.book = 'referrer_cashable' AND t.kind = 'payout' AND t.status = 'pending' THEN -p.units END), 0) \
 FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
 WHERE p.holder IS NOT NULL AND t.status <> 'voided' {filter} \
 GROUP BY p.holder, p.program, p.currency ORDER BY p.holder, p.program, p.currency";

/// One program balance and its cash-out verdict (`None`: the program is not configured).
pub(crate) fn assess(
    programs: &ProgramSet,
    program: ProgramId,
    currency: Currency,
    sums: BookSums,
    lifetime_spend: Money,
    has_rented: bool,
    hosted_machines: bool,
) -> StoreResult<(ProgramBalance, Option<Result<(), Ineligible>>)> {
    let terms = programs.get(&program);
    let m = |u: i64| Money::from_units(u, currency);
    let earned = m(sums
        .cashable
        .checked_add(sums.credit)
        .ok_or_else(overflow)?);
    let available = m(sums
        .cashable
        .checked_sub(sums.withdrawn)
        .and_then(|v| v.checked_sub(sums.pending))
        .ok_or_else(overflow)?);
    let facts = CashOutFacts {
        earned,
        available,
        lifetime_spend,
        has_rented,
        hosted_machines,
    };
    let verdict = terms.map(|t| cash_out_eligibility(t, &facts));
    let reason = match &verdict {
        Some(v) => v.as_ref().err().map(|e| e.to_string()),
        None => Some(format!(
            "program {program} is not in the loaded configuration ({}); its balance is kept but cannot be paid until it is",
            programs.ids()
        )),
    };
    let eligible = reason.is_none();
    Ok((
        ProgramBalance {
            kind: terms.map(|t| t.kind.code()),
            reward: terms.map(|t| t.reward),
            rails: terms.map(|t| t.cash_out.rails.clone()).unwrap_or_default(),
            program,
            currency,
            earned,
            cashable: m(sums.cashable),
            credit: m(sums.credit),
            withdrawn: m(sums.withdrawn),
            pending: m(sums.pending),
            available,
            payable_now: if eligible {
                max_payable(&facts)
            } else {
                Money::zero(currency)
            },
            lifetime_spend,
            eligible,
            reason,
        },
        verdict,
    ))
}

/// program, referred, status, disqualification, template_id.
type ReferralRow = (String, String, String, Option<String>, Option<String>);

fn overflow() -> StoreError {
    StoreError::Corrupt("balance overflows the storable range".into())
}

impl super::Store {
    /// An account's balance under the loaded programs.
    pub async fn balance(
        &self,
        account: &crate::domain::ids::AccountId,
    ) -> StoreResult<AccountBalance> {
        let mut conn = self.pool().acquire().await?;
        load_balance(&mut conn, self.programs(), account).await
    }

    /// Every account that referred someone, in id order.
    pub async fn referrers(&self) -> StoreResult<Vec<AccountId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT referrer_id FROM referrals ORDER BY referrer_id")
                .fetch_all(self.pool())
                .await?;
        ids.iter()
            .map(|id| parse_stored("account id", id))
            .collect()
    }
}
