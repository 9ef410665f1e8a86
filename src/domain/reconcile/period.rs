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
}

/// Calendar days from `from` to `to`, both included, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    pub fn parse(from: &str, to: &str) -> Result<Self, PeriodError> {
        let date = |s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| PeriodError::NotADate(s.to_string()))
        };
        Self::new(date(from)?, date(to)?)
    }

    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, PeriodError> {
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

    /// First instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.to.and_time(chrono::NaiveTime::MIN).and_utc() + Duration::days(1)
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start() && at < self.end()
    }

    /// The span to read from a provider: the period widened by the date tolerance on both
    /// sides, so a payment recorded just across midnight from our send is still seen.
    pub fn fetch_window(&self, tolerances: &Tolerances) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.start() - tolerances.date, self.end() + tolerances.date)
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
