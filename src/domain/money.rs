//! Money: an exact decimal amount that always carries its currency.
//!
//! Commissions accrue at full precision. Only when money moves is an amount rounded, and always
//! down, to the currency's minor unit; the residue stays in the balance.
//!
//! Storage uses integer fixed-point [`Units`] at [`UNIT_SCALE`] decimal places, so every sum the
//! database computes is exact integer arithmetic (SQLite has no exact decimal type).

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Decimal places of the integer fixed-point amounts stored in the database.
///
/// Ten places hold a 6-decimal usage amount times a 2-decimal rate times a 2-decimal cashable
/// fraction exactly (3% × 75% = 0.0225). The largest storable amount is about 922 million.
pub const UNIT_SCALE: u32 = 10;

/// Decimal places accepted on amounts coming in from platforms (usage, refunds, purchases).
pub const MAX_INPUT_DECIMALS: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}: use an ISO 4217 code such as USD, EUR or GBP")]
    UnknownCurrency(String),
    #[error(
        "{0:?} is not a decimal amount: write digits with at most one decimal point between \
         digits, and nothing else (no spaces, signs, exponents or separators), e.g. \"12.34\""
    )]
    NotADecimal(String),
    #[error("amount {amount} has {got} decimal places; at most {max} are accepted here")]
    TooManyDecimals { amount: Decimal, got: u32, max: u32 },
    #[error("amount {0} must be greater than zero")]
    NotPositive(Decimal),
    #[error("amount {0} is too large to store")]
    Overflow(Decimal),
    #[error("amount {0} is too large to be an amount")]
    TooLarge(String),
    #[error("amount {amount} is over the largest single amount accepted ({max})")]
    OverCap { amount: Decimal, max: Decimal },
    #[error("a total of {0} stored units is beyond the exact decimal range")]
    TotalOutOfRange(i128),
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
}

/// An ISO 4217 currency this system can move money in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Currency {
    Usd,
    Eur,
    Gbp,
    Cad,
    Aud,
    Chf,
    Sek,
    Nok,
    Dkk,
    Pln,
    Inr,
    Brl,
    Mxn,
    Sgd,
    Nzd,
    Jpy,
    Krw,
}

impl Currency {
    const ALL: [(Currency, &'static str, u32); 17] = [
        (Currency::Usd, "USD", 2),
        (Currency::Eur, "EUR", 2),
        (Currency::Gbp, "GBP", 2),
        (Currency::Cad, "CAD", 2),
        (Currency::Aud, "AUD", 2),
        (Currency::Chf, "CHF", 2),
        (Currency::Sek, "SEK", 2),
        (Currency::Nok, "NOK", 2),
        (Currency::Dkk, "DKK", 2),
        (Currency::Pln, "PLN", 2),
        (Currency::Inr, "INR", 2),
        (Currency::Brl, "BRL", 2),
        (Currency::Mxn, "MXN", 2),
        (Currency::Sgd, "SGD", 2),
        (Currency::Nzd, "NZD", 2),
        (Currency::Jpy, "JPY", 0),
        (Currency::Krw, "KRW", 0),
    ];

    /// Every currency this system knows.
    pub fn all() -> impl Iterator<Item = Currency> {
        Self::ALL.iter().map(|(c, _, _)| *c)
    }

    fn entry(self) -> (Currency, &'static str, u32) {
        // Every variant is listed in ALL (checked by a unit test), so the fallback is unreachable.
        Self::ALL
            .iter()
            .copied()
            .find(|(c, _, _)| *c == self)
            .unwrap_or((self, "USD", 2))
    }

    /// The upper-case ISO code, e.g. `USD`.
    pub fn code(self) -> &'static str {
        self.entry().1
    }

    /// Decimal places of the minor unit (2 for USD, 0 for JPY).
    pub fn minor_decimals(self) -> u32 {
        self.entry().2
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Self::ALL
            .iter()
            .find(|(_, code, _)| *code == upper)
            .map(|(c, _, _)| *c)
            .ok_or_else(|| MoneyError::UnknownCurrency(s.to_string()))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The one grammar for amounts from outside (platform records, the API, the command line,
/// provider exports): an optional leading `-`, ASCII digits, and at most one decimal point
/// with digits on both sides and at most `max_decimals` digits after it. Nothing else: no
/// whitespace, `+`, exponent, digit separator (`1_000`, `1,000`), `1.` or `.5`. Callers that
/// move money reject negatives and zero themselves ([`Money::parse_payable`]).
pub fn parse_decimal(text: &str, max_decimals: u32) -> Result<Decimal, MoneyError> {
    let malformed = || MoneyError::NotADecimal(text.to_string());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (unsigned, ""),
    };
    if !digits(whole) || (unsigned.contains('.') && !digits(fraction)) {
        return Err(malformed());
    }
    // Only digits, a sign and a point are left, so parsing fails only on size.
    let too_large = |_| MoneyError::TooLarge(text.to_string());
    let got = u32::try_from(fraction.len()).unwrap_or(u32::MAX);
    if got > max_decimals {
        return Err(MoneyError::TooManyDecimals {
            amount: Decimal::from_str(text).map_err(too_large)?,
            got,
            max: max_decimals,
        });
    }
    Ok(Decimal::from_str_exact(text)
        .map_err(too_large)?
        .normalize())
}

/// Integer fixed-point amount at [`UNIT_SCALE`], the form money takes in the database.
pub type Units = i64;

/// An exact amount in one currency. May be negative (clawbacks, ledger postings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money {
            amount: amount.normalize(),
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Money::new(Decimal::ZERO, currency)
    }

    /// Parses an amount written by someone else (see [`parse_decimal`] for the grammar),
    /// rejecting more than `max_decimals` written decimals.
    pub fn parse(amount: &str, currency: Currency, max_decimals: u32) -> Result<Self, MoneyError> {
        Ok(Money::new(parse_decimal(amount, max_decimals)?, currency))
    }

    /// Parses an amount that is about to move: positive and in whole minor units.
    pub fn parse_payable(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let money = Money::parse(amount, currency, currency.minor_decimals())?;
        if money.amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(money.amount));
        }
        Ok(money)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    pub fn is_positive(&self) -> bool {
        self.amount > Decimal::ZERO
    }

    /// Same currency, or an error naming both.
    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow(self.amount))?;
        Ok(Money::new(sum, self.currency))
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.checked_add(&other.negate())
    }

    pub fn negate(&self) -> Money {
        Money::new(-self.amount, self.currency)
    }

    /// Multiplies by an exact rate (a commission rate or a fraction) at full precision.
    pub fn times(&self, rate: Decimal) -> Result<Money, MoneyError> {
        let product = self
            .amount
            .checked_mul(rate)
            .ok_or(MoneyError::Overflow(self.amount))?;
        Ok(Money::new(product, self.currency))
    }

    /// Rounds *down* (toward negative infinity) to the minor unit, returning the payable part
    /// and the residue left behind, which is always in `[0, one minor unit)`.
    pub fn round_down_to_minor(&self) -> (Money, Money) {
        let payable = self.amount.round_dp_with_strategy(
            self.currency.minor_decimals(),
            RoundingStrategy::ToNegativeInfinity,
        );
        let residue = self.amount - payable;
        (
            Money::new(payable, self.currency),
            Money::new(residue, self.currency),
        )
    }

    /// Whether the amount is a whole number of minor units (so it can move as-is).
    pub fn is_whole_minor(&self) -> bool {
        self.amount.normalize().scale() <= self.currency.minor_decimals()
    }

    /// The amount in integer minor units (cents), for wire formats such as Stripe's.
    /// Fails if the amount is not a whole number of minor units.
    pub fn to_minor_units(&self) -> Result<i64, MoneyError> {
        if !self.is_whole_minor() {
            return Err(MoneyError::TooManyDecimals {
                amount: self.amount,
                got: self.amount.scale(),
                max: self.currency.minor_decimals(),
            });
        }
        let scaled = self.amount * Decimal::from(10i64.pow(self.currency.minor_decimals()));
        i64::try_from(scaled).map_err(|_| MoneyError::Overflow(self.amount))
    }

    pub fn from_minor_units(minor: i64, currency: Currency) -> Money {
        Money::new(Decimal::new(minor, currency.minor_decimals()), currency)
    }

    /// The storage form. Fails if the amount has more than [`UNIT_SCALE`] decimals or overflows.
    pub fn to_units(&self) -> Result<Units, MoneyError> {
        if self.amount.scale() > UNIT_SCALE {
            return Err(MoneyError::TooManyDecimals {
                amount: self.amount,
                got: self.amount.scale(),
                max: UNIT_SCALE,
            });
        }
        let mut scaled = self.amount;
        scaled.rescale(UNIT_SCALE);
        let mantissa = scaled.mantissa();
        i64::try_from(mantissa).map_err(|_| MoneyError::Overflow(self.amount))
    }

    pub fn from_units(units: Units, currency: Currency) -> Money {
        Money::new(Decimal::new(units, UNIT_SCALE), currency)
    }

    /// A total of stored units (a sum of many [`Units`], kept as `i128` so it cannot overflow).
    pub fn from_total_units(units: i128, currency: Currency) -> Result<Money, MoneyError> {
        Decimal::try_from_i128_with_scale(units, UNIT_SCALE)
            .map(|amount| Money::new(amount, currency))
            .map_err(|_| MoneyError::TotalOutOfRange(units))
    }

    /// The largest single amount that can be stored (about 922 million): the per-amount cap.
    pub fn max_single_amount() -> Decimal {
        Decimal::new(Units::MAX, UNIT_SCALE)
    }

    /// Fails with [`MoneyError::OverCap`] when the amount (either sign) is over the cap.
    pub fn check_cap(&self) -> Result<(), MoneyError> {
        let max = Money::max_single_amount();
        if self.amount.abs() > max {
            return Err(MoneyError::OverCap {
                amount: self.amount,
                max: max.normalize(),
            });
        }
        Ok(())
    }

    /// Fixed two-or-more decimal rendering for people: `12.50 USD`, `0.0225 USD`.
    pub fn display_amount(&self) -> String {
        let minor = self.currency.minor_decimals();
        let mut shown = self.amount.normalize();
        if shown.scale() < minor {
            shown.rescale(minor);
        }
        shown.to_string()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.display_amount(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros_free::dec;

    /// Tiny local stand-in for a `dec!` macro so the tests read naturally.
    mod rust_decimal_macros_free {
        macro_rules! dec {
            ($s:literal) => {
                rust_decimal::Decimal::from_str_exact(stringify!($s)).unwrap()
            };
        }
        pub(crate) use dec;
    }

    #[test]
    fn every_currency_has_an_entry() {
        for (c, code, _) in Currency::ALL {
            assert_eq!(c.code(), code);
            assert_eq!(code.parse::<Currency>().unwrap(), c);
        }
        assert_eq!("usd".parse::<Currency>().unwrap(), Currency::Usd);
        assert!(matches!(
            "XYZ".parse::<Currency>(),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn parse_rejects_floats_and_excess_precision() {
        assert!(Money::parse("1e3", Currency::Usd, 6).is_err());
        assert!(Money::parse("abc", Currency::Usd, 6).is_err());
        assert!(matches!(
            Money::parse("1.1234567", Currency::Usd, 6),
            Err(MoneyError::TooManyDecimals { got: 7, .. })
        ));
        assert_eq!(
            Money::parse("10.50", Currency::Usd, 6).unwrap().amount(),
            dec!(10.5)
        );
    }

    /// Parses as every outside amount is parsed.
    fn outside(text: &str, max_decimals: u32) -> Result<Decimal, MoneyError> {
        Money::parse(text, Currency::Usd, max_decimals).map(|m| m.amount())
    }

    #[test]
    fn amounts_from_outside_are_plain_decimal_strings() {
        for good in ["0.5", "12", "12.50", "0", "-3.25", "007"] {
            assert!(outside(good, 2).is_ok(), "{good:?} is refused");
        }
        assert_eq!(outside("12.50", 2), Ok(dec!(12.5)));
        for bad in [
            "1_000", " 1", "1 ", "+1", "1.", ".5", "1e3", "1E3", "", "-", "1.2.3", "1,000", "--1",
            "- 1", "0x10", "\u{0661}", "NaN", "inf", ".", "1._5", "_1",
        ] {
            assert_eq!(
                outside(bad, 6),
                Err(MoneyError::NotADecimal(bad.to_string())),
                "{bad:?} is accepted"
            );
        }
        assert!(matches!(
            outside("12.500", 2),
            Err(MoneyError::TooManyDecimals { got: 3, max: 2, .. })
        ));
        assert!(matches!(
            outside("10.0", 0),
            Err(MoneyError::TooManyDecimals { got: 1, max: 0, .. })
        ));
        assert!(outside("99999999999999999999999999999999", 2).is_err());
    }

    #[test]
    fn payable_amounts_refuse_what_the_grammar_refuses() {
        for bad in ["1_000", " 1", "+1", "1.", ".5", "1e3"] {
            assert!(
                matches!(
                    Money::parse_payable(bad, Currency::Usd),
                    Err(MoneyError::NotADecimal(_))
                ),
                "{bad:?} is accepted"
            );
        }
        assert!(matches!(
            Money::parse_payable("-1", Currency::Usd),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            Money::parse_payable("12.500", Currency::Usd),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            Money::parse_payable("1000.0", Currency::Jpy),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert_eq!(
            Money::parse_payable("0.5", Currency::Usd).map(|m| m.amount()),
            Ok(dec!(0.5))
        );
    }

    #[test]
    fn payable_amounts_are_positive_whole_minor_units() {
        assert!(Money::parse_payable("10.00", Currency::Usd).is_ok());
        assert!(matches!(
            Money::parse_payable("0", Currency::Usd),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            Money::parse_payable("-5", Currency::Usd),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(Money::parse_payable("10.001", Currency::Usd).is_err());
        assert!(Money::parse_payable("10.5", Currency::Jpy).is_err());
    }

    #[test]
    fn round_down_keeps_the_residue() {
        let m = Money::new(dec!(28.125), Currency::Usd);
        let (pay, residue) = m.round_down_to_minor();
        assert_eq!(pay.amount(), dec!(28.12));
        assert_eq!(residue.amount(), dec!(0.005));
        assert_eq!(pay.to_minor_units().unwrap(), 2812);
    }

    #[test]
    fn units_round_trip() {
        let m = Money::new(dec!(0.0225), Currency::Usd);
        assert_eq!(m.to_units().unwrap(), 225_000_000);
        assert_eq!(Money::from_units(225_000_000, Currency::Usd), m);
        assert!(
            Money::new(dec!(0.00000000001), Currency::Usd)
                .to_units()
                .is_err()
        );
    }

    #[test]
    fn the_cap_is_the_largest_storable_amount_and_totals_go_past_it() {
        let max = Money::new(Money::max_single_amount(), Currency::Usd);
        assert!(max.check_cap().is_ok());
        assert_eq!(max.to_units().unwrap(), Units::MAX);
        let over = Money::new(dec!(922337203.6854775808), Currency::Usd);
        assert!(matches!(over.check_cap(), Err(MoneyError::OverCap { .. })));
        assert!(over.to_units().is_err());
        let total = i128::from(Units::MAX) * 3;
        assert_eq!(
            Money::from_total_units(total, Currency::Usd)
                .unwrap()
                .amount(),
            max.amount() * Decimal::from(3)
        );
        assert!(matches!(
            Money::from_total_units(i128::MAX, Currency::Usd),
            Err(MoneyError::TotalOutOfRange(_))
        ));
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let a = Money::new(dec!(1), Currency::Usd);
        let b = Money::new(dec!(1), Currency::Eur);
        assert!(matches!(
            a.checked_add(&b),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
    }

    fn any_amount() -> impl Strategy<Value = Decimal> {
        // Up to ~92 million with up to 10 decimals: the storable range.
        (0i64..=920_000_000_000_000_000i64).prop_map(|m| Decimal::new(m, UNIT_SCALE))
    }

    proptest! {
        #[test]
        fn rounding_down_never_pays_more_and_loses_nothing(a in any_amount()) {
            let m = Money::new(a, Currency::Usd);
            let (pay, residue) = m.round_down_to_minor();
            prop_assert!(pay.amount() <= m.amount());
            prop_assert!(residue.amount() >= Decimal::ZERO);
            prop_assert!(residue.amount() < dec!(0.01));
            prop_assert_eq!(pay.checked_add(&residue).unwrap(), m);
            prop_assert!(pay.is_whole_minor());
        }

        #[test]
        fn units_are_an_exact_encoding(a in any_amount(), negative in any::<bool>()) {
            let m = Money::new(if negative { -a } else { a }, Currency::Eur);
            let units = m.to_units().unwrap();
            prop_assert_eq!(Money::from_units(units, Currency::Eur), m);
        }

        #[test]
        fn minor_units_round_trip(cents in -1_000_000_000i64..1_000_000_000i64) {
            let m = Money::from_minor_units(cents, Currency::Usd);
            prop_assert_eq!(m.to_minor_units().unwrap(), cents);
        }
    }
}
