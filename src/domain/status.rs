//! A payout's status: the states of the payout state machine (`domain::payout`) and of the
//! one table of moves between them (`domain::transition`).

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Created with its hold; no attempt has been made yet.
    Queued,
    /// An attempt's request may be on the wire. Found at the start of a job, it means the
    /// previous worker stopped mid-send: the outcome is unknown.
    Submitting,
    /// The last attempt provably did not move money; another is scheduled.
    RetryScheduled,
    /// The last attempt may or may not have moved money; the next step is a lookup.
    OutcomeUnknown,
    /// The provider accepted the payment but has not delivered it yet (PayPal PENDING or
    /// UNCLAIMED, Wise processing). The hold stays; the payout is polled until it settles.
    Processing,
    /// The provider delivered the money; the hold is posted. Final, except that the money
    /// can still come back (returned, reversed, bounced).
    Paid,
    /// Delivered, then came back: the payout is reversed in the ledger and the amount is
    /// available again. Final.
    Returned,
    /// The provider refused for good; the hold is voided. Final.
    Failed,
    /// Attempts are exhausted or the provider's records are inconsistent; an operator decides.
    /// The hold stays in place so the money cannot be withdrawn again meanwhile.
    NeedsOperator,
    /// Created with its hold but not to be sent yet: a review rule flagged it (an operator
    /// approves or rejects it) or a tax form is missing (it is released when the form
    /// arrives). `payout_flags` says which.
    Held,
}

impl PayoutStatus {
    pub const ALL: [PayoutStatus; 10] = [
        PayoutStatus::Queued,
        PayoutStatus::Submitting,
        PayoutStatus::RetryScheduled,
        PayoutStatus::OutcomeUnknown,
        PayoutStatus::Processing,
        PayoutStatus::Paid,
        PayoutStatus::Returned,
        PayoutStatus::Failed,
        PayoutStatus::NeedsOperator,
        PayoutStatus::Held,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PayoutStatus::Queued => "queued",
            PayoutStatus::Submitting => "submitting",
            PayoutStatus::RetryScheduled => "retry_scheduled",
            PayoutStatus::OutcomeUnknown => "outcome_unknown",
            PayoutStatus::Processing => "processing",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Returned => "returned",
            PayoutStatus::Failed => "failed",
            PayoutStatus::NeedsOperator => "needs_operator",
            PayoutStatus::Held => "held",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// No worker step changes these again. (A paid payout can still be returned by the
    /// provider; that arrives as an observation, see `domain::tracking::track`.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PayoutStatus::Paid | PayoutStatus::Failed | PayoutStatus::Returned
        )
    }

    /// States a worker acts on by itself.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            PayoutStatus::Queued
                | PayoutStatus::Submitting
                | PayoutStatus::RetryScheduled
                | PayoutStatus::OutcomeUnknown
                | PayoutStatus::Processing
        )
    }

    /// Whether the previous attempt may have moved money, so a lookup must come first.
    pub fn needs_lookup(self) -> bool {
        matches!(
            self,
            PayoutStatus::Submitting | PayoutStatus::OutcomeUnknown
        )
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in PayoutStatus::ALL {
            assert_eq!(PayoutStatus::from_code(s.code()), Some(s));
        }
        assert!(PayoutStatus::Paid.is_final() && PayoutStatus::Failed.is_final());
        assert!(
            !PayoutStatus::NeedsOperator.is_final() && !PayoutStatus::NeedsOperator.is_active()
        );
    }
}
