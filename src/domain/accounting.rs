//! Accounting exports (no I/O): the chart of accounts finance loads the ledger into, the
//! debit/credit split of a signed posting, and rounding to the cent that keeps every journal
//! entry and every trial balance balanced.
//!
//! # Chart of accounts
//!
//! Each ledger [`Book`] maps to one general-ledger account: a fixed code (the account in
//! finance's chart) plus a name that carries the book's sub-ledger key, so the export can be
//! loaded either rolled up by code or per sub-account by name.
//!
//! | code | class     | name                                                   | book                |
//! |------|-----------|--------------------------------------------------------|---------------------|
//! | 1000 | asset     | `Rail settlement / <rail>`                             | rail settlement     |
//! | 2100 | liability | `Referrer payable (cashable) / <account> / <program>`  | referrer cashable   |
//! | 2200 | liability | `Referrer platform credit / <account> / <program>`     | referrer credit     |
//! | 5100 | expense   | `Commission expense / <program>`                       | commission expense  |
//! | 5900 | expense   | `Duplicate payment loss / <program>`                   | payout loss         |
//!
//! Rail settlement is the clearing account for money sent through a rail (the platform's
//! balance at Stripe, PayPal, ...): a payout credits it, a return debits it, so its credit
//! balance is what left through that rail and stayed out, to be matched against the provider's
//! statements and funded from the bank.
//!
//! # Debits and credits
//!
//! The ledger's sign convention ([`crate::domain::ledger`]) is that a positive amount *credits*
//! its book, so a negative one debits it: an accrual debits commission expense and credits the
//! referrer's payable, a payout debits the payable and credits rail settlement.
//!
//! # Rounding
//!
//! Commissions accrue at ten decimal places; books are kept in minor units (cents). Rounding
//! each line on its own can leave an entry a cent out, so [`round_balanced`] rounds a group of
//! lines together by the largest-remainder method: every line moves by less than one minor unit,
//! lines that are already whole cents never move, and the rounded lines sum to exactly the
//! rounded sum of the exact lines — zero for a balanced entry.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::ids::{AccountId, ProgramId, Rail};
use super::ledger::Book;
use super::money::{Currency, Money, MoneyError};

/// Account code of the rail settlement (clearing) accounts.
pub const RAIL_SETTLEMENT: &str = "1000";
/// Account code of what the platform owes referrers in cash.
pub const REFERRER_PAYABLE: &str = "2100";
/// Account code of earnings kept on the platform as credit.
pub const REFERRER_CREDIT: &str = "2200";
/// Account code of the programs' commission cost.
pub const COMMISSION_EXPENSE: &str = "5100";
/// Account code of duplicate payments written off as a loss.
pub const PAYOUT_LOSS: &str = "5900";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountingError {
    #[error("{value:?} is not a date: expected a UTC calendar day as YYYY-MM-DD, e.g. 2026-11-30")]
    BadDate { value: String },
    #[error("stored ledger book {0} is not valid")]
    BadBook(String),
}

/// The kind of a general-ledger account, which decides its normal side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountClass {
    Asset,
    Liability,
    Expense,
}

/// A general-ledger account: a code from the chart and a name naming the sub-account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlAccount {
    pub code: &'static str,
    pub class: AccountClass,
    /// e.g. `Referrer payable (cashable) / alice / vast`.
    pub name: String,
}

/// The general-ledger account a book is exported to (see the module's chart of accounts).
pub fn gl_account(book: &Book) -> GlAccount {
    match book {
        Book::RailSettlement { rail } => GlAccount {
            code: RAIL_SETTLEMENT,
            class: AccountClass::Asset,
            name: format!("Rail settlement / {rail}", rail = rail.as_str()),
        },
        Book::ReferrerCashable { account, program } => GlAccount {
            code: REFERRER_PAYABLE,
            class: AccountClass::Liability,
            name: format!("Referrer payable (cashable) / {account} / {program}"),
        },
        Book::ReferrerCredit { account, program } => GlAccount {
            code: REFERRER_CREDIT,
            class: AccountClass::Liability,
            name: format!("Referrer platform credit / {account} / {program}"),
        },
        Book::CommissionExpense { program } => GlAccount {
            code: COMMISSION_EXPENSE,
            class: AccountClass::Expense,
            name: format!("Commission expense / {program}"),
        },
        Book::PayoutLoss { program } => GlAccount {
            code: PAYOUT_LOSS,
            class: AccountClass::Expense,
            name: format!("Duplicate payment loss / {program}"),
        },
    }
}

/// Rebuilds a [`Book`] from its stored parts (`ledger_postings.book`, `holder`, `program`,
/// `rail`), refusing parts that do not belong together.
pub fn book_from_parts(
    code: &str,
    holder: Option<&str>,
    program: Option<&str>,
    rail: Option<&str>,
) -> Result<Book, AccountingError> {
    let bad = || {
        AccountingError::BadBook(format!(
            "{code} (holder {holder:?}, program {program:?}, rail {rail:?})"
        ))
    };
    let account = || {
        holder
            .and_then(|h| AccountId::parse(h).ok())
            .ok_or_else(bad)
    };
    let program_id = || {
        program
            .and_then(|p| ProgramId::parse(p).ok())
            .ok_or_else(bad)
    };
    match code {
        "referrer_cashable" => Ok(Book::ReferrerCashable {
            account: account()?,
            program: program_id()?,
        }),
        "referrer_credit" => Ok(Book::ReferrerCredit {
            account: account()?,
            program: program_id()?,
        }),
        "commission_expense" => Ok(Book::CommissionExpense {
            program: program_id()?,
        }),
        "payout_loss" => Ok(Book::PayoutLoss {
            program: program_id()?,
        }),
        "rail_settlement" => Ok(Book::RailSettlement {
            rail: rail.and_then(|r| r.parse::<Rail>().ok()).ok_or_else(bad)?,
        }),
        _ => Err(bad()),
    }
}

/// A signed amount split into its debit and credit sides (one of them zero, both
/// non-negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DebitCredit {
    pub debit: Money,
    pub credit: Money,
}

/// Splits a signed posting amount by the ledger's convention: positive credits, negative
/// debits.
pub fn debit_credit(signed: Money) -> DebitCredit {
    let zero = Money::zero(signed.currency());
    if signed.is_negative() {
        DebitCredit {
            debit: signed.negate(),
            credit: zero,
        }
    } else if signed.is_positive() {
        DebitCredit {
            debit: zero,
            credit: signed,
        }
    } else {
        DebitCredit {
            debit: zero,
            credit: zero,
        }
    }
}

/// Rounds lines to their currency's minor unit so that, per currency, they still add up: the
/// rounded lines sum to exactly the exact sum rounded half away from zero (so a balanced group
/// stays balanced), and each line moves by less than one minor unit.
///
/// Largest remainder: every line is first rounded down; the minor units still missing are
/// handed, one each, to the lines that lost the most (ties to the earlier line). A line that
/// is already a whole number of minor units is never moved. Lines keep their order; currencies
/// are rounded independently.
pub fn round_balanced(lines: &[Money]) -> Result<Vec<Money>, MoneyError> {
    let mut out = lines.to_vec();
    let mut by_currency: BTreeMap<Currency, Vec<usize>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        by_currency.entry(line.currency()).or_default().push(i);
    }
    for (currency, indices) in by_currency {
        let scale = Decimal::from(10u64.pow(currency.minor_decimals()));
        // (line index, floor in minor units, fraction lost by flooring)
        let mut floored = Vec::with_capacity(indices.len());
        let mut exact_sum = Decimal::ZERO;
        let mut floor_sum = Decimal::ZERO;
        for i in indices {
            let amount = lines[i].amount();
            let minor = amount
                .checked_mul(scale)
                .ok_or(MoneyError::Overflow(amount))?;
            let floor = minor.floor();
            exact_sum = exact_sum
                .checked_add(minor)
                .ok_or(MoneyError::Overflow(amount))?;
            floor_sum = floor_sum
                .checked_add(floor)
                .ok_or(MoneyError::Overflow(amount))?;
            floored.push((i, floor, minor - floor));
        }
        let target = exact_sum.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        // The fractions are each in [0, 1), so this is a whole number in [0, lines].
        let missing = (target - floor_sum)
            .to_usize()
            .ok_or(MoneyError::Overflow(target))?;
        let mut order: Vec<usize> = (0..floored.len()).collect();
        order.sort_by(|&a, &b| floored[b].2.cmp(&floored[a].2).then(a.cmp(&b)));
        for (rank, k) in order.into_iter().enumerate() {
            let (i, floor, _) = floored[k];
            let minor = if rank < missing {
                floor + Decimal::ONE
            } else {
                floor
            };
            out[i] = Money::new(minor / scale, currency);
        }
    }
    Ok(out)
}

/// Debit and credit totals per currency, for the TOTAL rows and the "debits = credits" line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    by_currency: BTreeMap<Currency, (Decimal, Decimal)>,
}

impl Totals {
    /// Adds a signed line (positive credits, negative debits).
    pub fn add(&mut self, signed: &Money) {
        let (debit, credit) = self
            .by_currency
            .entry(signed.currency())
            .or_insert((Decimal::ZERO, Decimal::ZERO));
        if signed.is_negative() {
            *debit -= signed.amount();
        } else {
            *credit += signed.amount();
        }
    }

    /// Per currency, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (Currency, DebitCredit)> + '_ {
        self.by_currency.iter().map(|(c, (d, k))| {
            (
                *c,
                DebitCredit {
                    debit: Money::new(*d, *c),
                    credit: Money::new(*k, *c),
                },
            )
        })
    }

    /// Whether debits equal credits in every currency.
    pub fn is_balanced(&self) -> bool {
        self.by_currency.values().all(|(d, k)| d == k)
    }

    pub fn is_empty(&self) -> bool {
        self.by_currency.is_empty()
    }
}

/// An amount for a CSV cell: fixed minor-unit decimals, no currency (`12.50`, `1234` for JPY).
pub fn csv_amount(m: &Money) -> String {
    m.display_amount()
}

/// Parses a `YYYY-MM-DD` day (UTC).
pub fn parse_day(value: &str) -> Result<NaiveDate, AccountingError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| AccountingError::BadDate {
        value: value.to_string(),
    })
}

/// The first instant of `day` (UTC).
pub fn start_of_day(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The end of `day` (UTC) as an exclusive bound: the first instant of the next day.
pub fn end_of_day(day: NaiveDate) -> DateTime<Utc> {
    start_of_day(day.succ_opt().unwrap_or(NaiveDate::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(s: &str, c: Currency) -> Money {
        Money::parse(s, c, 10).unwrap()
    }

    fn usd(s: &str) -> Money {
        money(s, Currency::Usd)
    }

    fn vast() -> ProgramId {
        ProgramId::parse("vast").unwrap()
    }

    fn alice() -> AccountId {
        AccountId::parse("alice").unwrap()
    }

    #[test]
    fn every_book_has_an_account() {
        let payable = gl_account(&Book::ReferrerCashable {
            account: alice(),
            program: vast(),
        });
        assert_eq!(payable.code, "2100");
        assert_eq!(payable.name, "Referrer payable (cashable) / alice / vast");
        assert_eq!(payable.class, AccountClass::Liability);
        let credit = gl_account(&Book::ReferrerCredit {
            account: alice(),
            program: vast(),
        });
        assert_eq!(credit.code, "2200");
        assert_eq!(credit.name, "Referrer platform credit / alice / vast");
        let expense = gl_account(&Book::CommissionExpense { program: vast() });
        assert_eq!(
            (expense.code, expense.name.as_str()),
            ("5100", "Commission expense / vast")
        );
        let loss = gl_account(&Book::PayoutLoss { program: vast() });
        assert_eq!(
            (loss.code, loss.class, loss.name.as_str()),
            (
                "5900",
                AccountClass::Expense,
                "Duplicate payment loss / vast"
            )
        );
        let rail = gl_account(&Book::RailSettlement { rail: Rail::Paypal });
        assert_eq!(
            (rail.code, rail.name.as_str()),
            ("1000", "Rail settlement / paypal")
        );
    }

    #[test]
    fn books_round_trip_through_their_stored_parts() {
        let books = [
            Book::ReferrerCashable {
                account: alice(),
                program: vast(),
            },
            Book::ReferrerCredit {
                account: alice(),
                program: vast(),
            },
            Book::CommissionExpense { program: vast() },
            Book::PayoutLoss { program: vast() },
            Book::RailSettlement { rail: Rail::Wise },
        ];
        for book in books {
            let holder = book.holder().map(|h| h.to_string());
            let program = book.program().map(|p| p.to_string());
            let rail = book.rail().map(|r| r.as_str());
            let back =
                book_from_parts(book.code(), holder.as_deref(), program.as_deref(), rail).unwrap();
            assert_eq!(back, book);
        }
        assert!(book_from_parts("referrer_cashable", None, Some("vast"), None).is_err());
        assert!(book_from_parts("rail_settlement", None, None, Some("swift")).is_err());
        assert!(book_from_parts("suspense", None, None, None).is_err());
    }

    #[test]
    fn positive_credits_and_negative_debits() {
        let dc = debit_credit(usd("-12.5"));
        assert_eq!((dc.debit, dc.credit), (usd("12.5"), usd("0")));
        let dc = debit_credit(usd("3"));
        assert_eq!((dc.debit, dc.credit), (usd("0"), usd("3")));
        let dc = debit_credit(usd("0"));
        assert!(dc.debit.is_zero() && dc.credit.is_zero());
        assert_eq!(csv_amount(&dc.debit), "0.00");
        assert_eq!(csv_amount(&usd("12.5")), "12.50");
        assert_eq!(csv_amount(&money("1234", Currency::Jpy)), "1234");
    }

    #[test]
    fn a_three_way_split_stays_balanced() {
        // 1/3 each way: rounding each line alone gives -0.33 / 0.17 / 0.17, a cent out.
        let lines = [usd("-0.335"), usd("0.1675"), usd("0.1675")];
        let rounded = round_balanced(&lines).unwrap();
        let sum = rounded
            .iter()
            .fold(usd("0"), |a, b| a.checked_add(b).unwrap());
        assert!(sum.is_zero(), "{rounded:?}");
        assert!(rounded.iter().all(Money::is_whole_minor));
        assert_eq!(rounded[0], usd("-0.34"));
    }

    #[test]
    fn whole_cents_never_move_and_currencies_round_apart() {
        let lines = [
            usd("-10.00"),
            money("-0.5", Currency::Jpy),
            usd("9.995"),
            money("0.5", Currency::Jpy),
            usd("0.005"),
        ];
        let rounded = round_balanced(&lines).unwrap();
        assert_eq!(rounded[0], usd("-10"));
        assert_eq!(
            rounded[1]
                .checked_add(&rounded[3])
                .unwrap()
                .to_minor_units()
                .unwrap(),
            0
        );
        assert_eq!(
            rounded[2].checked_add(&rounded[4]).unwrap(),
            usd("10"),
            "{rounded:?}"
        );
    }

    #[test]
    fn an_unbalanced_group_rounds_to_its_rounded_sum() {
        let rounded = round_balanced(&[usd("0.002"), usd("0.002")]).unwrap();
        assert_eq!(rounded, vec![usd("0"), usd("0")]);
        // 0.008 rounds to a cent, which goes to the first of two equal remainders.
        let rounded = round_balanced(&[usd("0.004"), usd("0.004")]).unwrap();
        assert_eq!(rounded, vec![usd("0.01"), usd("0")]);
        let rounded = round_balanced(&[usd("0.003"), usd("0.003"), usd("0.004")]).unwrap();
        assert_eq!(rounded, vec![usd("0"), usd("0"), usd("0.01")]);
        assert!(round_balanced(&[]).unwrap().is_empty());
    }

    #[test]
    fn totals_say_whether_debits_equal_credits() {
        let mut t = Totals::default();
        assert!(t.is_empty() && t.is_balanced());
        t.add(&usd("-1.25"));
        assert!(!t.is_balanced());
        t.add(&usd("1.25"));
        t.add(&money("5", Currency::Eur));
        t.add(&money("-5", Currency::Eur));
        assert!(t.is_balanced());
        let all: Vec<_> = t.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.debit, usd("1.25"));
    }

    #[test]
    fn days_parse_and_end_at_the_next_midnight() {
        let day = parse_day("2026-11-30").unwrap();
        assert_eq!(start_of_day(day).to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(end_of_day(day).to_rfc3339(), "2026-12-01T00:00:00+00:00");
        for bad in ["30/11/2026", "2026-13-01", "2026-11-31", "", "yesterday"] {
            let err = parse_day(bad).unwrap_err().to_string();
            assert!(err.contains("YYYY-MM-DD"), "{err}");
        }
    }

    const CURRENCIES: [Currency; 3] = [Currency::Usd, Currency::Jpy, Currency::Eur];

    /// Balanced entries: each currency's lines are random amounts at the storage precision
    /// plus one line that closes them to zero.
    fn balanced_lines() -> impl Strategy<Value = Vec<Money>> {
        proptest::collection::vec(
            (
                0usize..CURRENCIES.len(),
                proptest::collection::vec(-10_000_000_000_000i64..10_000_000_000_000, 1..12),
            ),
            1..4,
        )
        .prop_map(|groups| {
            let mut lines = Vec::new();
            for (c, units) in groups {
                let currency = CURRENCIES[c];
                let mut sum = 0i64;
                for u in units {
                    sum += u;
                    lines.push(Money::from_units(u, currency));
                }
                lines.push(Money::from_units(-sum, currency));
            }
            lines
        })
        .prop_shuffle()
    }

    fn sums(lines: &[Money]) -> BTreeMap<Currency, Decimal> {
        let mut out = BTreeMap::new();
        for l in lines {
            *out.entry(l.currency()).or_insert(Decimal::ZERO) += l.amount();
        }
        out
    }

    proptest! {
        #[test]
        fn balanced_in_balanced_out_to_the_minor_unit(lines in balanced_lines()) {
            let rounded = round_balanced(&lines).unwrap();
            prop_assert_eq!(rounded.len(), lines.len());
            for s in sums(&rounded).values() {
                prop_assert!(s.is_zero(), "rounded lines sum to {}", s);
            }
            for (exact, r) in lines.iter().zip(&rounded) {
                prop_assert_eq!(exact.currency(), r.currency());
                prop_assert!(r.is_whole_minor());
                let unit = Decimal::new(1, exact.currency().minor_decimals());
                prop_assert!((r.amount() - exact.amount()).abs() < unit,
                    "{} rounded to {}", exact, r);
                if exact.is_whole_minor() {
                    prop_assert_eq!(r, exact);
                }
            }
        }

        #[test]
        fn any_lines_round_to_their_rounded_sum(
            units in proptest::collection::vec((0usize..CURRENCIES.len(), -1_000_000_000_000i64..1_000_000_000_000), 0..30),
        ) {
            let lines: Vec<Money> = units.iter().map(|(c, u)| Money::from_units(*u, CURRENCIES[*c])).collect();
            let rounded = round_balanced(&lines).unwrap();
            let exact = sums(&lines);
            let got = sums(&rounded);
            for (currency, sum) in exact {
                let want = sum.round_dp_with_strategy(currency.minor_decimals(), RoundingStrategy::MidpointAwayFromZero);
                prop_assert_eq!(got[&currency], want);
            }
            for (exact, r) in lines.iter().zip(&rounded) {
                let unit = Decimal::new(1, exact.currency().minor_decimals());
                prop_assert!((r.amount() - exact.amount()).abs() < unit);
            }
        }
    }
}
