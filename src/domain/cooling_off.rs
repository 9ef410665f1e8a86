//! Cooling-off after a payout method changes: a common account-takeover defence. Whoever
//! takes over an account changes where its money goes and then cashes out at once; holding
//! new withdrawals through a changed method for a while gives the real owner (and the
//! platform's own alerts) time to notice.
//!
//! An account's first methods are not held (there is nothing to take over yet); a method
//! whose destination is replaced, or one added beside an existing one, is (the database
//! records when, in `payout_methods.changed_at`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Safety settings that apply to every withdrawal, run and operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Safeguards {
    /// How long a changed payout method holds new payouts through it.
    pub method_cooling_off: Duration,
    /// Operator actions on payouts above this amount (in the payout's currency) need a
    /// second operator's approval (`domain::operator::needs_approval`). `None`: never.
    pub four_eyes_above: Option<rust_decimal::Decimal>,
}

impl Safeguards {
    /// Three days: long enough for a weekend, the usual choice of payout platforms.
    pub const DEFAULT_COOLING_OFF: Duration = Duration::from_secs(72 * 3600);
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            method_cooling_off: Safeguards::DEFAULT_COOLING_OFF,
            four_eyes_above: None,
        }
    }
}

/// Until when a method that changed at `changed_at` holds payouts, if it still does at `now`.
pub fn held_until(
    changed_at: Option<DateTime<Utc>>,
    cooling_off: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let changed_at = changed_at?;
    // A period too long to represent holds for good rather than not at all.
    let period = chrono::Duration::from_std(cooling_off).unwrap_or(chrono::Duration::MAX);
    let until = changed_at
        .checked_add_signed(period)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (until > now).then_some(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_method_never_changed_is_not_held() {
        assert_eq!(
            held_until(
                None,
                Safeguards::DEFAULT_COOLING_OFF,
                at("2026-01-01T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn a_changed_method_holds_until_the_period_ends() {
        let changed = Some(at("2026-01-01T00:00:00Z"));
        let day = Duration::from_secs(86_400);
        assert_eq!(
            held_until(changed, day, at("2026-01-01T12:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
        assert_eq!(held_until(changed, day, at("2026-01-02T00:00:00Z")), None);
        assert_eq!(
            held_until(changed, Duration::ZERO, at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn an_enormous_period_holds_rather_than_overflows() {
        let changed = Some(at("2026-01-01T00:00:00Z"));
        assert!(held_until(changed, Duration::MAX, at("2030-01-01T00:00:00Z")).is_some());
    }
}
