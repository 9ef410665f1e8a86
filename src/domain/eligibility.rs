//! Who may cash out, and how much. Every refusal carries a reason a person can act on.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::money::Money;
use super::program::Program;

/// The balance figures the cash-out rules look at, all in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CashOutFacts {
    /// Lifetime referral earnings (cashable and credit parts, net of clawbacks).
    pub earned: Money,
    /// Cashable earnings (matured) not yet withdrawn or held by a pending payout.
    pub available: Money,
    /// Cashable earnings still in the program's holding period, and when the next part
    /// matures.
    pub maturing: Money,
    pub next_matures_at: Option<DateTime<Utc>>,
    /// The account's own lifetime spend (usage net of refunds).
    pub lifetime_spend: Money,
    /// The account ever rented (has any usage of its own).
    pub has_rented: bool,
    pub hosted_machines: bool,
}

/// Why an account may not cash out right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Ineligible {
    #[error(
        "this account has {activity}; it may cash out only while its lifetime referral earnings \
         ({earned}) exceed its lifetime spend ({spend})"
    )]
    SpendGate {
        activity: &'static str,
        earned: Money,
        spend: Money,
    },
    #[error(
        "the cashable balance is negative ({available}) after clawbacks; future earnings repay it first"
    )]
    NegativeBalance { available: Money },
    #[error("nothing is available to cash out")]
    NothingAvailable,
    #[error(
        "nothing is available to cash out yet: {maturing} is in the program's holding period; the next part matures at {next}"
    )]
    Maturing {
        maturing: Money,
        next: DateTime<Utc>,
    },
    #[error(
        "this program pays platform credits, which cannot be withdrawn as cash; spend them on the platform"
    )]
    CreditOnly,
    #[error("the available {available} is below this program's minimum payout of {minimum}")]
    BelowMinimum { available: Money, minimum: Money },
}

/// Whether the account may cash out at all under `program`'s terms.
pub fn cash_out_eligibility(program: &Program, facts: &CashOutFacts) -> Result<(), Ineligible> {
    let terms = &program.cash_out;
    if terms.cashable_fraction.is_zero() {
        return Err(Ineligible::CreditOnly);
    }
    if terms.spend_gate && (facts.has_rented || facts.hosted_machines) {
        let activity = match (facts.has_rented, facts.hosted_machines) {
            (true, true) => "rented instances and hosted machines",
            (true, false) => "rented instances",
            _ => "hosted machines",
        };
        if facts.earned.amount() <= facts.lifetime_spend.amount() {
            return Err(Ineligible::SpendGate {
                activity,
                earned: facts.earned,
                spend: facts.lifetime_spend,
            });
        }
    }
    if facts.available.is_negative() {
        return Err(Ineligible::NegativeBalance {
            available: facts.available,
        });
    }
    if facts.available.is_zero() {
        return Err(match facts.next_matures_at {
            Some(next) if facts.maturing.is_positive() => Ineligible::Maturing {
                maturing: facts.maturing,
                next,
            },
            _ => Ineligible::NothingAvailable,
        });
    }
    // A residue below one minor unit is money the payee has, too small to move: it waits for
    // the minimum like any other small balance (and says so), rather than reading as nothing.
    let payable = facts.available.round_down_to_minor().0;
    if payable.is_zero() || payable.amount() < terms.minimum_payout.amount() {
        return Err(Ineligible::BelowMinimum {
            // What could move (49.99 of 49.999), or the residue itself when nothing can.
            available: if payable.is_zero() {
                facts.available
            } else {
                payable
            },
            minimum: terms.minimum_payout,
        });
    }
    Ok(())
}

/// The largest amount that can move now: the available balance rounded down to the minor unit.
pub fn max_payable(facts: &CashOutFacts) -> Money {
    if facts.available.is_negative() {
        return Money::zero(facts.available.currency());
    }
    facts.available.round_down_to_minor().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;
    use crate::domain::program::ProgramSet;

    fn vast() -> Program {
        crate::domain::program::preset_program("vast")
    }
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::Usd, 10).unwrap()
    }

    fn facts(earned: &str, available: &str, spend: &str) -> CashOutFacts {
        CashOutFacts {
            earned: usd(earned),
            available: usd(available),
            lifetime_spend: usd(spend),
            has_rented: !usd(spend).is_zero(),
            hosted_machines: false,
            maturing: usd("0"),
            next_matures_at: None,
        }
    }

    #[test]
    fn a_balance_still_maturing_says_how_much_and_when() {
        let next = DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let f = CashOutFacts {
            maturing: usd("22.50"),
            next_matures_at: Some(next),
            ..facts("30", "0", "0")
        };
        let err = cash_out_eligibility(&vast(), &f).unwrap_err();
        assert_eq!(
            err,
            Ineligible::Maturing {
                maturing: usd("22.50"),
                next
            }
        );
        assert!(err.to_string().contains("22.50 USD"), "{err}");
        // Something matured already: that is what may leave now.
        let some = CashOutFacts {
            available: usd("5"),
            ..f
        };
        assert_eq!(cash_out_eligibility(&vast(), &some), Ok(()));
        assert_eq!(max_payable(&some), usd("5"));
    }

    #[test]
    fn the_seed_example_is_not_payable() {
        // Vast's docs: $300 earned, $855 lifetime charges: cannot cash out.
        let err = cash_out_eligibility(&vast(), &facts("300", "225", "855")).unwrap_err();
        assert!(matches!(err, Ineligible::SpendGate { .. }));
        let text = err.to_string();
        assert!(
            text.contains("300.00 USD") && text.contains("855.00 USD"),
            "{text}"
        );
    }

    #[test]
    fn earnings_must_strictly_exceed_spend() {
        let t = vast();
        assert!(cash_out_eligibility(&t, &facts("855", "600", "855")).is_err());
        assert!(cash_out_eligibility(&t, &facts("855.01", "600", "855")).is_ok());
    }

    #[test]
    fn a_dedicated_referral_account_is_never_gated() {
        assert!(cash_out_eligibility(&vast(), &facts("10", "7.5", "0")).is_ok());
    }

    #[test]
    fn hosting_alone_triggers_the_gate() {
        let mut f = facts("10", "7.5", "0");
        f.hosted_machines = true;
        // Earnings 10 > spend 0, so still eligible; with nothing earned, not.
        assert!(cash_out_eligibility(&vast(), &f).is_ok());
        f.earned = usd("0");
        assert!(matches!(
            cash_out_eligibility(&vast(), &f),
            Err(Ineligible::SpendGate {
                activity: "hosted machines",
                ..
            })
        ));
    }

    #[test]
    fn negative_and_sub_cent_balances_do_not_pay() {
        let t = vast();
        assert!(matches!(
            cash_out_eligibility(&t, &facts("1", "-0.5", "0")),
            Err(Ineligible::NegativeBalance { .. })
        ));
        // A sub-cent residue is below the minimum, and says so with its amount.
        let residue = cash_out_eligibility(&t, &facts("1", "0.009", "0")).unwrap_err();
        assert!(
            matches!(residue, Ineligible::BelowMinimum { .. }),
            "{residue:?}"
        );
        assert!(
            residue
                .to_string()
                .contains("below this program's minimum payout")
        );
        assert!(matches!(
            cash_out_eligibility(&t, &facts("1", "0", "0")),
            Err(Ineligible::NothingAvailable)
        ));
        assert_eq!(max_payable(&facts("1", "0.009", "0")), usd("0"));
        assert_eq!(max_payable(&facts("1", "28.125", "0")), usd("28.12"));
    }

    #[test]
    fn credits_never_cash_out_and_minimums_wait() {
        let set =
            ProgramSet::load(&["runpod".into()], &|_| Some("seed-for-unit-tests".into())).unwrap();
        let credits = set.get_str("runpod").unwrap();
        assert!(matches!(
            cash_out_eligibility(credits, &facts("100", "100", "0")),
            Err(Ineligible::CreditOnly)
        ));
        let mut cash = set.get_str("runpod-affiliate").unwrap().clone();
        assert!(
            cash_out_eligibility(&cash, &facts("100", "100", "500")).is_ok(),
            "no spend gate"
        );
        cash.cash_out.minimum_payout = usd("50");
        let err = cash_out_eligibility(&cash, &facts("100", "49.999", "0")).unwrap_err();
        assert!(
            err.to_string().contains("49.99 USD") && err.to_string().contains("50.00 USD"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn max_payable_never_exceeds_available(units in -1_000_000_000_000i64..1_000_000_000_000i64) {
            let available = Money::new(Decimal::new(units, 10), Currency::Usd);
            let f = CashOutFacts { earned: usd("1"), available, lifetime_spend: usd("0"), has_rented: false, hosted_machines: false, maturing: usd("0"), next_matures_at: None };
            let max = max_payable(&f);
            prop_assert!(!max.is_negative());
            prop_assert!(max.amount() <= available.amount().max(Decimal::ZERO));
            prop_assert!(max.is_whole_minor());
        }
    }
}
