//! Posting what is owed, exactly once, however often and in whatever order facts arrive.
//!
//! Each earning stream (a referral's commission, a bonus, a template's creator share) has an
//! *expected* state computed from all the facts: what its spend earned and what refunds took
//! back. The ledger holds what was *posted*: the sum of its accruals (never negative) and of
//! its clawbacks (never positive). [`true_up`] returns the accrual and clawback to post so the
//! ledger's net equals the expected net. Posting them and asking again returns zeros, which
//! is why a replayed ingest changes nothing and a late referral still collects its spend.

use rust_decimal::Decimal;

/// Totals of one stream, as magnitudes (both never negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamTotals {
    /// What spend earned (accruals).
    pub earned: Decimal,
    /// What refunds and corrections took back (clawbacks), as a positive number.
    pub clawed: Decimal,
}

impl StreamTotals {
    pub fn net(&self) -> Decimal {
        self.earned - self.clawed
    }
}

/// The accrual and clawback that bring `posted` to `expected`'s net, both never negative.
///
/// Accruals only grow: when the facts now earn *less* than was accrued (a referred account's
/// signup was corrected, a backdated affiliate opt-in moved spend from credits to cash) the
/// difference is clawed back rather than un-accrued, so every change stays visible.
pub fn true_up(posted: StreamTotals, expected: StreamTotals) -> StreamTotals {
    let earned = posted.earned.max(expected.earned);
    let target_clawed = earned - expected.net();
    if target_clawed >= posted.clawed {
        StreamTotals {
            earned: earned - posted.earned,
            clawed: target_clawed - posted.clawed,
        }
    } else {
        // More was clawed back than the facts now call for: give the difference back as an
        // accrual (it happens when a refund's usage now earns less, e.g. after a correction).
        StreamTotals {
            earned: earned - posted.earned + (posted.clawed - target_clawed),
            clawed: Decimal::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(earned: i64, clawed: i64) -> StreamTotals {
        StreamTotals {
            earned: Decimal::new(earned, 2),
            clawed: Decimal::new(clawed, 2),
        }
    }

    #[test]
    fn new_spend_and_refunds_post_their_difference() {
        assert_eq!(true_up(t(0, 0), t(3000, 0)), t(3000, 0));
        assert_eq!(true_up(t(3000, 0), t(4500, 600)), t(1500, 600));
        assert_eq!(true_up(t(4500, 600), t(4500, 600)), t(0, 0));
    }

    #[test]
    fn earning_less_than_accrued_is_clawed_back() {
        assert_eq!(true_up(t(3000, 0), t(1000, 0)), t(0, 2000));
    }

    proptest! {
        #[test]
        fn posting_the_true_up_reaches_the_expected_net_and_is_then_a_no_op(
            pe in 0i64..1_000_000, pc in 0i64..1_000_000, ee in 0i64..1_000_000, ec in 0i64..1_000_000,
        ) {
            let posted = t(pe, pc);
            let expected = t(ee, ec.min(ee));
            let delta = true_up(posted, expected);
            prop_assert!(delta.earned >= Decimal::ZERO && delta.clawed >= Decimal::ZERO);
            let after = StreamTotals { earned: posted.earned + delta.earned, clawed: posted.clawed + delta.clawed };
            prop_assert_eq!(after.net(), expected.net());
            prop_assert_eq!(true_up(after, expected), StreamTotals::default());
        }
    }
}
