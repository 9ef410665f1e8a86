//! Payee statements: what a payee's balance was at an instant, and a month's movements from
//! one month-end balance to the next.
//!
//! A statement follows the money owed to the payee in cash: the cashable part of what they
//! earned, less what was paid out. A movement counts from its effective time (accruals and
//! clawbacks when booked, a payout when the provider confirmed it, a return when it came
//! back), so a month's closing balance is, by construction, the next month's opening one. The
//! platform credit that stays on the platform is reported beside it.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use super::ids::{AccountId, ProgramId};
use super::money::{Currency, Money, MoneyError};

/// A calendar month (UTC), the period of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    first: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("{0:?} is not a month; expected YYYY-MM, e.g. 2026-03")]
    BadMonth(String),
    #[error("{0:?} is neither an RFC 3339 instant nor a date (YYYY-MM-DD)")]
    BadInstant(String),
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The movements do not explain the change of balance: a bug or a damaged ledger, never
    /// a statement to hand out.
    #[error(
        "{program} {currency}: opening {opening} plus this month's movements {moved} is not the closing {closing}"
    )]
    DoesNotAddUp {
        program: ProgramId,
        currency: Currency,
        opening: Money,
        moved: Money,
        closing: Money,
    },
}

impl Month {
    pub fn parse(text: &str) -> Result<Month, StatementError> {
        let bad = || StatementError::BadMonth(text.to_string());
        let (year, month) = text.trim().split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        let first = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
        Ok(Month { first })
    }

    /// The instant the month starts (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.first.and_time(chrono::NaiveTime::MIN))
    }

    /// The instant the next month starts (the end, exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn next(&self) -> Month {
        let (y, m) = match self.first.month() {
            12 => (self.first.year() + 1, 1),
            m => (self.first.year(), m + 1),
        };
        // The first of a month always exists.
        Month {
            first: NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(self.first),
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.first.format("%Y-%m"))
    }
}

/// An RFC 3339 instant, or a date meaning its first instant (UTC).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, StatementError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(|day| Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN)))
        .map_err(|_| StatementError::BadInstant(text.to_string()))
}

/// An account's balances as they stood at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalancesAt {
    pub account: AccountId,
    pub at: DateTime<Utc>,
    pub programs: Vec<BalanceAt>,
}

/// One program's balance at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceAt {
    pub program: ProgramId,
    pub currency: Currency,
    /// Cashable and credit parts of what was earned by then, net of clawbacks.
    pub earned: Money,
    pub cashable: Money,
    pub credit: Money,
    /// Paid out by then (confirmed by the provider).
    pub withdrawn: Money,
    /// Held by payouts not yet confirmed then.
    pub pending: Money,
    /// Cashable less withdrawn less pending.
    pub available: Money,
}

impl BalanceAt {
    /// What was owed to the payee in cash: cashable less paid out (held payouts included).
    pub fn owed(&self) -> Result<Money, MoneyError> {
        self.cashable.checked_sub(&self.withdrawn)
    }
}

/// What a movement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A commission (or bonus) booked.
    Earning,
    /// Taken back: a refund of the spend behind it, or a disqualification.
    Clawback,
    /// Paid out, confirmed by the provider.
    Payout,
    /// Money a provider returned after a payout (returned, reversed, bounced).
    Return,
    /// An operator's or a reconciliation's correction of a payout.
    Correction,
}

/// One movement of a payee's balance in a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Movement {
    /// The ledger transaction it is.
    pub transaction: String,
    pub at: DateTime<Utc>,
    pub kind: MovementKind,
    /// referral, affiliate, creator (template) or bonus, for earnings and clawbacks.
    pub stream: Option<String>,
    /// The cash part: what it changes in what is owed to the payee.
    pub amount: Money,
    /// The platform-credit part.
    pub credit: Money,
    pub payout_id: Option<String>,
    pub rail: Option<String>,
    /// The provider's reference for the payout.
    pub reference: Option<String>,
}

/// One stream's earnings in the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamEarnings {
    pub stream: String,
    pub amount: Money,
}

/// A month of one program in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProgramStatement {
    pub program: ProgramId,
    pub currency: Currency,
    /// Owed to the payee in cash when the month began.
    pub opening: Money,
    /// Cash earnings by stream, net of nothing (clawbacks are their own line).
    pub earnings: Vec<StreamEarnings>,
    pub clawbacks: Money,
    pub payouts: Money,
    pub returns: Money,
    pub corrections: Money,
    /// Owed to the payee in cash when the month ended.
    pub closing: Money,
    /// Platform credit (not cashable) at the start and end of the month.
    pub credit_opening: Money,
    pub credit_closing: Money,
    /// Held by payouts in flight at the month's end (part of `closing`).
    pub pending_at_close: Money,
    pub movements: Vec<Movement>,
}

/// A payee's statement for one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub account: AccountId,
    pub month: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub programs: Vec<ProgramStatement>,
}

/// One program's statement from its opening and closing balances and the movements between
/// them (in time order), refusing figures that do not add up.
pub fn program_statement(
    program: ProgramId,
    currency: Currency,
    opening: Option<&BalanceAt>,
    closing: Option<&BalanceAt>,
    movements: Vec<Movement>,
) -> Result<ProgramStatement, StatementError> {
    let zero = Money::zero(currency);
    let owed = |b: Option<&BalanceAt>| b.map_or(Ok(zero), BalanceAt::owed);
    let credit = |b: Option<&BalanceAt>| b.map_or(zero, |b| b.credit);
    let (open, close) = (owed(opening)?, owed(closing)?);
    let mut earnings: Vec<StreamEarnings> = Vec::new();
    let (mut clawbacks, mut payouts, mut returns, mut corrections) = (zero, zero, zero, zero);
    let mut moved = zero;
    for m in &movements {
        moved = moved.checked_add(&m.amount)?;
        let line = match m.kind {
            MovementKind::Earning => {
                let stream = m.stream.clone().unwrap_or_else(|| "other".into());
                let i = match earnings.iter().position(|e| e.stream == stream) {
                    Some(i) => i,
                    None => {
                        earnings.push(StreamEarnings {
                            stream,
                            amount: zero,
                        });
                        earnings.len() - 1
                    }
                };
                &mut earnings[i].amount
            }
            MovementKind::Clawback => &mut clawbacks,
            MovementKind::Payout => &mut payouts,
            MovementKind::Return => &mut returns,
            MovementKind::Correction => &mut corrections,
        };
        *line = line.checked_add(&m.amount)?;
    }
    if open.checked_add(&moved)? != close {
        return Err(StatementError::DoesNotAddUp {
            program,
            currency,
            opening: open,
            moved,
            closing: close,
        });
    }
    earnings.sort_by(|a, b| a.stream.cmp(&b.stream));
    Ok(ProgramStatement {
        program,
        currency,
        opening: open,
        earnings,
        clawbacks,
        payouts,
        returns,
        corrections,
        closing: close,
        credit_opening: credit(opening),
        credit_closing: credit(closing),
        pending_at_close: closing.map_or(zero, |b| b.pending),
        movements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::Usd, 10).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn balance(cashable: &str, withdrawn: &str) -> BalanceAt {
        BalanceAt {
            program: ProgramId::parse("vast").unwrap(),
            currency: Currency::Usd,
            earned: usd(cashable),
            cashable: usd(cashable),
            credit: usd("0"),
            withdrawn: usd(withdrawn),
            pending: usd("0"),
            available: usd("0"),
        }
    }

    fn movement(kind: MovementKind, amount: &str) -> Movement {
        Movement {
            transaction: "lt_1".into(),
            at: at("2026-03-05T00:00:00Z"),
            kind,
            stream: (kind == MovementKind::Earning).then(|| "referral".into()),
            amount: usd(amount),
            credit: usd("0"),
            payout_id: None,
            rail: None,
            reference: None,
        }
    }

    #[test]
    fn instants_are_rfc3339_or_a_days_start() {
        assert_eq!(
            parse_instant("2026-03-01").unwrap(),
            at("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            parse_instant("2026-03-01T12:00:00+02:00").unwrap(),
            at("2026-03-01T10:00:00Z")
        );
        assert!(parse_instant("March 1st").is_err());
    }

    #[test]
    fn months_parse_and_chain() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.start(), at("2026-12-01T00:00:00Z"));
        assert_eq!(m.end(), at("2027-01-01T00:00:00Z"));
        assert_eq!(m.next().to_string(), "2027-01");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_statement_adds_up_or_is_refused() {
        let program = ProgramId::parse("vast").unwrap();
        let moves = vec![
            movement(MovementKind::Earning, "30"),
            movement(MovementKind::Clawback, "-7.5"),
            movement(MovementKind::Payout, "-20"),
        ];
        let open = balance("10", "0");
        let close = balance("32.5", "20");
        let s = program_statement(
            program.clone(),
            Currency::Usd,
            Some(&open),
            Some(&close),
            moves.clone(),
        )
        .unwrap();
        assert_eq!((s.opening, s.closing), (usd("10"), usd("12.5")));
        assert_eq!(s.earnings[0].amount, usd("30"));
        assert_eq!((s.clawbacks, s.payouts), (usd("-7.5"), usd("-20")));
        let wrong = balance("32.5", "19");
        let err = program_statement(program, Currency::Usd, Some(&open), Some(&wrong), moves)
            .unwrap_err();
        assert!(matches!(err, StatementError::DoesNotAddUp { .. }), "{err}");
    }
}
