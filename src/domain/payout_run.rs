//! Scheduled payout runs: who is paid, through which rail, and why the others are not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::eligibility::Ineligible;
use super::ids::{IdError, ProgramId, Rail};
use super::money::{Currency, Money, MoneyError};
use super::program::Program;

/// The period a run pays for (`2026-11-21`, `2026-W47`, `2026-11`): a run is idempotent by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPeriod(String);

impl RunPeriod {
    /// The grammar [`RunPeriod::parse`] accepts, as the OpenAPI document publishes it.
    pub const PATTERN: &'static str = "^[A-Za-z0-9-]{1,32}$";

    pub fn parse(value: &str) -> Result<RunPeriod, IdError> {
        let v = value;
        if v.is_empty() {
            return Err(IdError::Empty { kind: "run period" });
        }
        if v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(IdError::BadCharacter {
                kind: "run period",
                value: v.to_string(),
            });
        }
        Ok(RunPeriod(v.to_string()))
    }

    /// The period of the day (UTC) `now` falls on, for daily runs.
    pub fn day_of(now: chrono::DateTime<chrono::Utc>) -> RunPeriod {
        RunPeriod(now.format("%Y-%m-%d").to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key a run's payout is unique by, per account.
///
/// Payouts are unique by (account, key), and callers choose keys too (a withdrawal's
/// `Idempotency-Key`). A derived key always contains `/`, which no caller's key may
/// ([`super::ids::IdempotencyKey`] refuses it), so the two namespaces cannot meet: no caller can
/// take the key a run will derive and make the run fail for everyone.
pub fn run_key(period: &RunPeriod, program: &ProgramId, currency: Currency) -> String {
    format!("run/{}/{}/{}", period.as_str(), program, currency.code())
}

/// Why a payee with a cashable balance is not paid by a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The balance is below the program's minimum payout.
    BelowMinimum,
    /// Nothing (or less than one minor unit) is available.
    NothingAvailable,
    /// Nothing is available yet: what was earned is still in the program's holding period.
    Maturing,
    /// Clawbacks left the balance negative; future earnings repay it first.
    NegativeBalance,
    /// Earnings do not exceed the account's own spend (Vast's rule).
    SpendGate,
    /// No payout method for any rail the program pays through.
    NoMethod,
    /// A payout method exists, but automatic payouts are off for it.
    AutoPayoutOff,
    /// The method the run would pay through changed recently (cooling-off).
    MethodCoolingOff,
    /// The balance belongs to a program that is no longer configured.
    NotConfigured,
    /// The payee's figures could not be computed, or the amount cannot move as one payout;
    /// the report's `problems` name the payee and the reason. Never fails the run for others.
    CannotCompute,
}

impl Skip {
    pub fn code(self) -> &'static str {
        match self {
            Skip::BelowMinimum => "below_minimum",
            Skip::NothingAvailable => "nothing_available",
            Skip::Maturing => "maturing",
            Skip::NegativeBalance => "negative_balance",
            Skip::SpendGate => "spend_gate",
            Skip::NoMethod => "no_method",
            Skip::AutoPayoutOff => "auto_payout_off",
            Skip::MethodCoolingOff => "method_cooling_off",
            Skip::NotConfigured => "not_configured",
            Skip::CannotCompute => "cannot_compute",
        }
    }

    pub fn from_ineligible(reason: &Ineligible) -> Skip {
        match reason {
            Ineligible::SpendGate { .. } => Skip::SpendGate,
            Ineligible::NegativeBalance { .. } => Skip::NegativeBalance,
            Ineligible::BelowMinimum { .. } => Skip::BelowMinimum,
            Ineligible::NothingAvailable | Ineligible::CreditOnly => Skip::NothingAvailable,
            Ineligible::Maturing { .. } => Skip::Maturing,
        }
    }
}

/// One of a payee's payout methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub rail: Rail,
    pub destination: String,
    pub auto_payout: bool,
    /// Set while a recent change holds payouts through this method.
    pub cooling_off: bool,
}

/// The rail and destination a run pays an eligible payee through: the first of the program's
/// rails (in configured order) with a method that has automatic payouts on.
pub fn choose_method<'m>(program: &Program, methods: &'m [Method]) -> Result<&'m Method, Skip> {
    let allowed: Vec<&Method> = program
        .cash_out
        .rails
        .iter()
        .filter_map(|rail| methods.iter().find(|m| m.rail == *rail))
        .collect();
    if allowed.is_empty() {
        return Err(Skip::NoMethod);
    }
    let method = allowed
        .into_iter()
        .find(|m| m.auto_payout)
        .ok_or(Skip::AutoPayoutOff)?;
    if method.cooling_off {
        // Not the next method along: the owner chose this one, and the change may not be theirs.
        return Err(Skip::MethodCoolingOff);
    }
    Ok(method)
}

/// Money a run moves through one rail in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RailTotal {
    pub rail: Rail,
    pub currency: Currency,
    pub payouts: u64,
    pub amount: Money,
}

/// A payee balance the run skipped because its figures could not be computed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunProblem {
    /// The payee's account, program and currency as stored.
    pub account: String,
    pub program: String,
    pub currency: String,
    pub reason: String,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunReport {
    pub period: RunPeriod,
    pub dry_run: bool,
    /// True when this period had already run: nothing new was created, and the figures are
    /// the first run's.
    pub already_ran: bool,
    /// Payee balances looked at (account, program, currency) in cash-paying programs.
    pub considered: u64,
    pub eligible: u64,
    /// Payouts created (zero on a dry run).
    pub created: u64,
    /// Of those, the ones created held for review or a tax form (`payouts review list`).
    #[serde(default)]
    pub held: u64,
    pub skipped: BTreeMap<Skip, u64>,
    pub totals: Vec<RailTotal>,
    /// The payees skipped as `cannot_compute`, each with its reason.
    #[serde(default)]
    pub problems: Vec<RunProblem>,
}

impl RunReport {
    pub fn new(period: RunPeriod, dry_run: bool) -> Self {
        RunReport {
            period,
            dry_run,
            already_ran: false,
            considered: 0,
            eligible: 0,
            created: 0,
            held: 0,
            skipped: BTreeMap::new(),
            totals: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Skips a payee whose figures could not be computed, keeping the reason.
    pub fn cannot_compute(&mut self, problem: RunProblem) {
        self.skip(Skip::CannotCompute);
        self.problems.push(problem);
    }

    pub fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }

    /// Counts one eligible payout into the per-rail totals (or, on an error, changes nothing).
    pub fn pay(&mut self, rail: Rail, amount: Money) -> Result<(), MoneyError> {
        match self
            .totals
            .iter_mut()
            .find(|t| t.rail == rail && t.currency == amount.currency())
        {
            Some(t) => {
                t.amount = t.amount.checked_add(&amount)?;
                t.payouts += 1;
            }
            None => self.totals.push(RailTotal {
                rail,
                currency: amount.currency(),
                payouts: 1,
                amount,
            }),
        }
        self.totals.sort_by_key(|t| (t.rail, t.currency));
        self.eligible += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::ids::IdempotencyKey;

    #[test]
    fn a_run_key_is_no_callers_key() {
        let key = run_key(
            &RunPeriod::parse("2026-11-23").unwrap(),
            &ProgramId::parse("vast").unwrap(),
            Currency::Usd,
        );
        assert_eq!(key, "run/2026-11-23/vast/USD");
        assert!(IdempotencyKey::parse(&key).is_err());
        // The old shape is a valid caller key, which is why it could collide.
        assert!(IdempotencyKey::parse("run-2026-11-23-vast-USD").is_ok());
    }

    use super::*;

    fn vast() -> Program {
        crate::domain::program::preset_program("vast")
    }

    fn method(rail: Rail, auto: bool) -> Method {
        Method {
            rail,
            destination: format!("{rail}-dest"),
            auto_payout: auto,
            cooling_off: false,
        }
    }

    #[test]
    fn the_first_allowed_rail_with_auto_payout_is_chosen() {
        let p = vast();
        let methods = [
            method(Rail::Partnerstack, true),
            method(Rail::Paypal, false),
            method(Rail::Wise, true),
        ];
        assert_eq!(choose_method(&p, &methods).unwrap().rail, Rail::Wise);
        assert_eq!(
            choose_method(&p, &methods[..2]).unwrap_err(),
            Skip::AutoPayoutOff
        );
        assert_eq!(
            choose_method(&p, &methods[..1]).unwrap_err(),
            Skip::NoMethod
        );
    }

    #[test]
    fn a_cooling_off_method_skips_the_payee_rather_than_falling_through() {
        let p = vast();
        // PayPal comes before Wise in Vast's rails.
        let mut paypal = method(Rail::Paypal, true);
        paypal.cooling_off = true;
        let methods = [method(Rail::Wise, true), paypal];
        assert_eq!(
            choose_method(&p, &methods).map(|m| m.rail),
            Err(Skip::MethodCoolingOff)
        );
    }

    #[test]
    fn periods_are_short_plain_tokens() {
        assert!(RunPeriod::parse("2026-11-21").is_ok());
        assert!(RunPeriod::parse("2026 11").is_err());
        assert!(RunPeriod::parse("").is_err());
        assert_eq!(RunPeriod::day_of(chrono::Utc::now()).as_str().len(), 10);
    }

    #[test]
    fn totals_add_up_per_rail_and_currency() {
        let mut r = RunReport::new(RunPeriod::day_of(chrono::Utc::now()), false);
        let usd = |s: &str| Money::parse(s, Currency::Usd, 2).unwrap();
        r.pay(Rail::Wise, usd("10.50")).unwrap();
        r.pay(Rail::Stripe, usd("1")).unwrap();
        r.pay(Rail::Wise, usd("0.25")).unwrap();
        r.skip(Skip::NoMethod);
        assert_eq!(r.eligible, 3);
        assert_eq!(r.totals[0].rail, Rail::Stripe);
        assert_eq!((r.totals[1].payouts, r.totals[1].amount), (2, usd("10.75")));
        assert_eq!(r.skipped[&Skip::NoMethod], 1);
    }

    #[test]
    fn a_payee_that_cannot_be_computed_is_counted_and_named() {
        let mut r = RunReport::new(RunPeriod::day_of(chrono::Utc::now()), true);
        r.cannot_compute(RunProblem {
            account: "a".into(),
            program: "vast".into(),
            currency: "USD".into(),
            reason: "too large".into(),
        });
        assert_eq!(r.skipped[&Skip::CannotCompute], 1);
        assert_eq!(r.problems[0].reason, "too large");
        // Reports stored before `problems` existed still read.
        let mut old = serde_json::to_value(&r).unwrap();
        old.as_object_mut().unwrap().remove("problems");
        let back: RunReport = serde_json::from_value(old).unwrap();
        assert!(back.problems.is_empty());
    }
}
