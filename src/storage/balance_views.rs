//! Balances as the outside world sees them, and the one rule that turns book sums into a
//! balance with its cash-out verdict. Shared by both storage backends.

use crate::domain::eligibility::{CashOutFacts, Ineligible, cash_out_eligibility, max_payable};
use crate::domain::ids::{AccountId, ProgramId, Rail};
use crate::domain::money::{Currency, Money, UNIT_SCALE};
use crate::domain::program::{ProgramSet, RewardKind};
use crate::storage::sums::{join, wide_sum};
use crate::storage::{StoreError, StoreResult};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use std::collections::BTreeMap;

/// One program's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProgramBalance {
    pub program: ProgramId,
    /// referral, affiliate, creator or bonus; `None` when the program is no longer configured.
    pub kind: Option<&'static str>,
    /// Whether the program pays credit or cash.
    pub reward: Option<RewardKind>,
    pub currency: Currency,
    /// Lifetime referral earnings: cashable (matured or maturing) and credit parts, net of
    /// clawbacks.
    pub earned: Money,
    /// The cashable part of `earned` that has matured (all of it without a holding period).
    pub cashable: Money,
    /// The cashable part of `earned` still in the program's holding period.
    pub maturing: Money,
    /// What matures on which day (UTC), earliest first.
    pub maturing_parts: Vec<MaturingPart>,
    /// When the next part matures.
    pub next_matures_at: Option<DateTime<Utc>>,
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

/// The part of a maturing balance that matures on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MaturingPart {
    #[schema(value_type = String, format = Date)]
    pub on: NaiveDate,
    pub amount: Money,
}

/// Where a referrer stands with an affiliate upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReferralNote {
    pub program: ProgramId,
    pub referred: String,
    pub status: String,
    pub template_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountBalance {
    pub account: AccountId,
    pub has_rented: bool,
    pub hosted_machines: bool,
    pub programs: Vec<ProgramBalance>,
    /// Affiliate upgrades open to this account (it refers in their referral program).
    pub affiliate: Vec<AffiliateStatus>,
    /// Referrals by this account that do not earn (disqualified or still pending).
    pub non_earning_referrals: Vec<ReferralNote>,
    /// Payouts of this account held for review or a tax form, and why (their amounts are in
    /// `pending`).
    pub held_payouts: Vec<HeldNote>,
}

/// A held payout as the payee's balance explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeldNote {
    pub payout: crate::domain::ids::PayoutId,
    pub program: ProgramId,
    pub amount: Money,
    /// Each open flag: its rule and evidence.
    pub reasons: Vec<String>,
}

impl AccountBalance {
    pub fn program(&self, program: &str, currency: Currency) -> Option<&ProgramBalance> {
        program_in(&self.programs, program, currency)
    }
}

/// The balance of `program` in `currency` among `programs`.
pub fn program_in<'a>(
    programs: &'a [ProgramBalance],
    program: &str,
    currency: Currency,
) -> Option<&'a ProgramBalance> {
    programs
        .iter()
        .find(|p| p.program.as_str() == program && p.currency == currency)
}

/// A payee's book totals in one program and currency, in stored units (totals of many stored
/// amounts, so wider than one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BookSums {
    pub cashable: i128,
    pub credit: i128,
    pub withdrawn: i128,
    pub pending: i128,
}

/// A row of [`book_sums`]: holder, program, currency, then each total as two halves.
pub(crate) type BookRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// The names of a payee's book totals, in [`BookRow`] order (the maintained balance's columns
/// are these with `_hi` and `_lo`).
pub(crate) const BOOK_TOTALS: [&str; 4] = ["cashable", "credit", "withdrawn", "pending"];

/// What each posting `p` of transaction `t` adds to each total, or NULL: the SQL form of
/// `domain::ledger::BalanceTotal::moved_by`.
pub(crate) fn book_total_exprs() -> [&'static str; 4] {
    [
        "CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('accrual', 'clawback') THEN p.units END",
        "CASE WHEN p.book = 'referrer_credit' THEN p.units END",
        "CASE WHEN p.book = 'referrer_cashable' AND t.kind IN ('payout', 'payout_return', 'payout_correction', 'payout_duplicate', 'payout_partial_return') AND t.status = 'posted' THEN -p.units END",
        "CASE WHEN p.book = 'referrer_cashable' AND t.kind = 'payout' AND t.status = 'pending' THEN -p.units END",
    ]
}

/// The SQL that sums payees' books per program and currency from their postings, exactly
/// (see `sums`); `filter` narrows it (`AND p.holder = $1`, or nothing for every payee). Reads
/// use the maintained balances; this is what `ledger-check` holds them against.
pub(crate) fn book_sums(filter: &str) -> String {
    let totals: Vec<String> = book_total_exprs().iter().map(|e| wide_sum(e)).collect();
    format!(
        "SELECT p.holder, p.program, p.currency, {} \
         FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.txn_id \
         WHERE p.holder IS NOT NULL AND t.status <> 'voided' {filter} \
         GROUP BY p.holder, p.program, p.currency ORDER BY p.holder, p.program, p.currency",
        totals.join(", ")
    )
}

/// Splits a [`BookRow`] into holder, program, currency and the joined totals.
pub(crate) fn split_book_row(row: BookRow) -> (String, String, String, BookSums) {
    let (holder, program, currency, c1, c2, r1, r2, w1, w2, p1, p2) = row;
    let sums = BookSums {
        cashable: join(c1, c2),
        credit: join(r1, r2),
        withdrawn: join(w1, w2),
        pending: join(p1, p2),
    };
    (holder, program, currency, sums)
}

/// The cashable parts of a balance still maturing: when each matures, and how much.
pub(crate) type MaturingShares<'a> = &'a [(DateTime<Utc>, Decimal)];

/// One program balance and its cash-out verdict (`None`: the program is not configured).
/// Only what has matured counts as cashable.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assess(
    programs: &ProgramSet,
    program: ProgramId,
    currency: Currency,
    sums: BookSums,
    maturing: MaturingShares<'_>,
    lifetime_spend: Money,
    has_rented: bool,
    hosted_machines: bool,
) -> StoreResult<(ProgramBalance, Option<Result<(), Ineligible>>)> {
    let terms = programs.get(&program);
    let m = |u: i128| Money::from_total_units(u, currency);
    let (maturing_units, maturing_parts) = maturing_totals(maturing, currency)?;
    let cashable = sums
        .cashable
        .checked_sub(maturing_units)
        .ok_or_else(overflow)?;
    let earned = m(sums
        .cashable
        .checked_add(sums.credit)
        .ok_or_else(overflow)?)?;
    let available = m(cashable
        .checked_sub(sums.withdrawn)
        .and_then(|v| v.checked_sub(sums.pending))
        .ok_or_else(overflow)?)?;
    let next_matures_at = maturing.iter().map(|(at, _)| *at).min();
    let facts = CashOutFacts {
        earned,
        available,
        maturing: m(maturing_units)?,
        next_matures_at,
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
            cashable: m(cashable)?,
            maturing: m(maturing_units)?,
            next_matures_at,
            maturing_parts,
            credit: m(sums.credit)?,
            withdrawn: m(sums.withdrawn)?,
            pending: m(sums.pending)?,
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

/// The maturing total in stored units, rounded up (what may leave is never overstated), and
/// its parts by the day they mature.
fn maturing_totals(
    maturing: MaturingShares<'_>,
    currency: Currency,
) -> StoreResult<(i128, Vec<MaturingPart>)> {
    let mut by_day: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for (at, amount) in maturing {
        total = total.checked_add(*amount).ok_or_else(overflow)?;
        let day = by_day.entry(at.date_naive()).or_default();
        *day = day.checked_add(*amount).ok_or_else(overflow)?;
    }
    let units = total
        .checked_mul(Decimal::from(10_i64.pow(UNIT_SCALE)))
        .ok_or_else(overflow)?
        .ceil()
        .to_i128()
        .ok_or_else(overflow)?;
    let parts = by_day
        .into_iter()
        .map(|(on, amount)| MaturingPart {
            on,
            amount: Money::new(amount.round_dp(UNIT_SCALE), currency),
        })
        .collect();
    Ok((units, parts))
}

fn overflow() -> StoreError {
    StoreError::Corrupt("balance overflows the storable range".into())
}
