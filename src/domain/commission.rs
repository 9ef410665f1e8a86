//! Commission accrual: a share of the referred account's *spend*, split into a cashable part
//! and a platform-credit part. Purchases of credits earn nothing until they are spent.

use rust_decimal::Decimal;

use super::ids::Program;
use super::money::{Money, MoneyError};

/// A program's earning terms. Issue 4 loads these from configuration; the Vast preset is the
/// only one the engine needs today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramTerms {
    pub program: Program,
    /// Share of each spend credited to the referrer (0.03 = 3%).
    pub rate: Decimal,
    /// Share of the commission that may leave as cash; the rest stays as platform credit.
    pub cashable_fraction: Decimal,
    /// Whether accounts that ever spent or hosted must earn more than they spent to cash out.
    pub spend_gate: bool,
}

impl ProgramTerms {
    /// Vast.ai: 3% of lifetime spend, 75% cashable, spend gate on.
    pub fn vast() -> Self {
        ProgramTerms {
            program: Program::Vast,
            rate: Decimal::new(3, 2),
            cashable_fraction: Decimal::new(75, 2),
            spend_gate: true,
        }
    }

    pub fn for_program(program: Program) -> Self {
        match program {
            Program::Vast => ProgramTerms::vast(),
        }
    }
}

/// One commission (or clawback, when negative), already split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accrual {
    pub cashable: Money,
    pub credit: Money,
}

impl Accrual {
    pub fn total(&self) -> Result<Money, MoneyError> {
        self.cashable.checked_add(&self.credit)
    }
}

/// Commission earned on one spend, at full precision. The credit part is computed as the
/// remainder so the two parts always add up to the commission exactly.
pub fn accrue(terms: &ProgramTerms, spend: &Money) -> Result<Accrual, MoneyError> {
    let commission = spend.times(terms.rate)?;
    let cashable = commission.times(terms.cashable_fraction)?;
    let credit = commission.checked_sub(&cashable)?;
    Ok(Accrual { cashable, credit })
}

/// A refund claws back exactly the share its amount earned.
pub fn claw_back(terms: &ProgramTerms, refund: &Money) -> Result<Accrual, MoneyError> {
    let earned = accrue(terms, refund)?;
    Ok(Accrual {
        cashable: earned.cashable.negate(),
        credit: earned.credit.negate(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::{Currency, MAX_INPUT_DECIMALS};
    use proptest::prelude::*;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::Usd, 10).unwrap()
    }

    #[test]
    fn vast_pays_three_percent_seventy_five_percent_cashable() {
        let a = accrue(&ProgramTerms::vast(), &usd("1000")).unwrap();
        assert_eq!(a.total().unwrap(), usd("30"));
        assert_eq!(a.cashable, usd("22.5"));
        assert_eq!(a.credit, usd("7.5"));
    }

    #[test]
    fn full_precision_is_kept() {
        let a = accrue(&ProgramTerms::vast(), &usd("0.01")).unwrap();
        assert_eq!(a.cashable, usd("0.000225"));
        assert_eq!(a.credit, usd("0.000075"));
    }

    #[test]
    fn a_refund_claws_back_its_share() {
        let t = ProgramTerms::vast();
        let earned = accrue(&t, &usd("500")).unwrap();
        let back = claw_back(&t, &usd("100")).unwrap();
        let net = earned
            .total()
            .unwrap()
            .checked_add(&back.total().unwrap())
            .unwrap();
        assert_eq!(net, usd("12"));
    }

    proptest! {
        #[test]
        fn split_adds_up_and_is_storable(cents in 0i64..100_000_000_000i64, extra in 0u32..=4) {
            // Any input amount with up to MAX_INPUT_DECIMALS decimals.
            let scale = 2 + extra.min(MAX_INPUT_DECIMALS - 2);
            let spend = Money::new(Decimal::new(cents, scale), Currency::Usd);
            let t = ProgramTerms::vast();
            let a = accrue(&t, &spend).unwrap();
            prop_assert_eq!(a.total().unwrap(), spend.times(t.rate).unwrap());
            prop_assert!(a.cashable.amount() >= Decimal::ZERO && a.credit.amount() >= Decimal::ZERO);
            // Exact at the storage scale: nothing is rounded away when it is posted.
            prop_assert_eq!(Money::from_units(a.cashable.to_units().unwrap(), Currency::Usd), a.cashable);
            prop_assert_eq!(Money::from_units(a.credit.to_units().unwrap(), Currency::Usd), a.credit);
            let back = claw_back(&t, &spend).unwrap();
            prop_assert!(a.total().unwrap().checked_add(&back.total().unwrap()).unwrap().is_zero());
        }
    }
}
