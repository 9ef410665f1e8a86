//! The window a reconciliation covers, and how far apart two readings of one payment may be.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::domain::money::{Currency, Money};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("{0:?} is not a date: use YYYY-MM-DD, e.g. 2026-11-01")]
    NotADate(String),
    #[error("--to {to} is before --from {from}")]
    Backwards { from: NaiveDate, to: NaiveDate },
    #[error(
        "{0} is outside the days a reconciliation can cover: use days from {first} to {last}",
        first = FIRST_DAY,
        last = LAST_DAY
    )]
    OutOfRange(NaiveDate),
}

/// The first day a period may cover: no payout of ours is older.
pub const FIRST_DAY: NaiveDate = const_day(2000, 1, 1);
/// The last day a period may cover: far enough out for any real run, and far from the
/// calendar's end, where the day after and the date tolerance would overflow.
pub const LAST_DAY: NaiveDate = const_day(2100, 12, 31);

/// A day known at compile time (an invalid one fails the build's constant evaluation).
const fn const_day(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(d) => d,
        None => panic!("not a date"),
    }
}

/// Calendar days from `from` to `to`, both included, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    pub fn parse(from: &str, to: &str) -> Result<Self, PeriodError> {
        // Exactly YYYY-MM-DD (RFC 3339's full-date): no spaces, no one-digit months, no signs.
        let shaped = |s: &str| {
            s.len() == 10
                && s.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    _ => b.is_ascii_digit(),
                })
        };
        let date = |s: &str| {
            shaped(s)
                .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .flatten()
                .ok_or_else(|| PeriodError::NotADate(s.to_string()))
        };
        Self::new(date(from)?, date(to)?)
    }

    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, PeriodError> {
        for day in [from, to] {
            if !(FIRST_DAY..=LAST_DAY).contains(&day) {
                return Err(PeriodError::OutOfRange(day));
            }
        }
        if to < from {
            return Err(PeriodError::Backwards { from, to });
        }
        Ok(Period { from, to })
    }

    /// The single day `day`.
    pub fn day(day: NaiveDate) -> Self {
        Period { from: day, to: day }
    }

    /// First instant inside the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.from.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// First instant after the period (the calendar's last instant for a period built by
    /// hand that ends on its last day; [`Period::new`] keeps periods far from it).
    pub fn end(&self) -> DateTime<Utc> {
        match self.to.succ_opt() {
            Some(next) => next.and_time(chrono::NaiveTime::MIN).and_utc(),
            None => DateTime::<Utc>::MAX_UTC,
        }
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start() && at < self.end()
    }

    /// The span to read from a provider: the period widened by the date tolerance on both
    /// sides, so a payment recorded just across midnight from our send is still seen.
    /// A tolerance reaching past the calendar's ends stops there.
    pub fn fetch_window(&self, tolerances: &Tolerances) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.start()
                .checked_sub_signed(tolerances.date)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            self.end()
                .checked_add_signed(tolerances.date)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{} to {}", self.from, self.to)
        }
    }
}

/// How far a provider record may differ from our payout and still be the same payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tolerances {
    /// Amount difference accepted, in minor units of the payout's currency (0 = exact).
    pub amount_minor: i64,
    /// Time between our send and the provider's record of it.
    #[serde(serialize_with = "hours")]
    pub date: Duration,
}

fn hours<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_hours())
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            amount_minor: 0,
            date: Duration::hours(72),
        }
    }
}

impl Tolerances {
    /// The amount tolerance in one currency.
    pub fn amount(&self, currency: Currency) -> Money {
        Money::from_minor_units(self.amount_minor, currency)
    }

    /// Whether two amounts in one currency are the same payment's.
    pub fn amounts_agree(&self, ours: &Money, theirs: &Money) -> bool {
        if ours.currency() != theirs.currency() {
            return false;
        }
        (ours.amount() - theirs.amount()).abs() <= self.amount(ours.currency()).amount()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Money {
        Money::new(s.parse().unwrap(), Currency::Usd)
    }

    #[test]
    fn a_period_covers_whole_days_in_utc() {
        let p = Period::parse("2026-11-01", "2026-11-30").unwrap();
        assert_eq!(p.start().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(p.end().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert!(p.contains(p.start()) && !p.contains(p.end()));
        assert_eq!(p.to_string(), "2026-11-01 to 2026-11-30");
        assert_eq!(Period::day(p.from).to_string(), "2026-11-01");
    }

    #[test]
    fn bad_periods_say_what_to_type() {
        assert_eq!(
            Period::parse("2026-11-31", "2026-12-01"),
            Err(PeriodError::NotADate("2026-11-31".into()))
        );
        let err = Period::parse("2026-11-02", "2026-11-01").unwrap_err();
        assert!(err.to_string().contains("before"), "{err}");
    }

    #[test]
    fn periods_outside_a_sane_range_are_refused_not_a_panic_later() {
        for (from, to) in [
            ("+262142-01-01", "+262142-12-31"),
            ("+262142-12-31", "+262142-12-31"),
            (" 2026-11-01", "2026-11-01"),
            ("2026-1-01", "2026-11-01"),
        ] {
            assert_eq!(
                Period::parse(from, to),
                Err(PeriodError::NotADate(from.to_string())),
                "only YYYY-MM-DD is a date"
            );
        }
        for (from, to) in [
            ("1999-12-31", "2000-01-01"),
            ("2100-12-31", "2101-01-01"),
            ("0001-01-01", "0001-01-02"),
        ] {
            let Err(err) = Period::parse(from, to) else {
                panic!("{from} to {to} is accepted");
            };
            let said = err.to_string();
            assert!(
                said.contains("2000-01-01") && said.contains("2100-12-31"),
                "{from} to {to}: {said}"
            );
        }
        let widest = Period::parse("2000-01-01", "2100-12-31").unwrap();
        assert_eq!(widest.end().to_rfc3339(), "2101-01-01T00:00:00+00:00");
        // A date tolerance beyond the calendar's range widens the window, never panics.
        let huge = Tolerances {
            date: Duration::hours(i64::from(u32::MAX)),
            ..Tolerances::default()
        };
        let (from, to) = widest.fetch_window(&huge);
        assert!(from < widest.start() && to > widest.end());
    }

    #[test]
    fn the_fetch_window_is_widened_by_the_date_tolerance() {
        let p = Period::parse("2026-11-01", "2026-11-01").unwrap();
        let t = Tolerances::default();
        let (from, to) = p.fetch_window(&t);
        assert_eq!(from, p.start() - Duration::hours(72));
        assert_eq!(to, p.end() + Duration::hours(72));
    }

    #[test]
    fn amounts_agree_within_the_tolerance_in_minor_units() {
        let t = Tolerances {
            amount_minor: 2,
            ..Tolerances::default()
        };
        assert!(t.amounts_agree(&usd("10.00"), &usd("10.02")));
        assert!(!t.amounts_agree(&usd("10.00"), &usd("10.03")));
        let eur = Money::new("10.00".parse().unwrap(), Currency::Eur);
        assert!(!t.amounts_agree(&usd("10.00"), &eur));
        assert!(Tolerances::default().amounts_agree(&usd("1"), &usd("1.00")));
    }
}
