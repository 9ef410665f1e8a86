//! What the operator console's overview reads: money paid per rail per day, and the payouts
//! waiting for a human with the reason each waits.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::ids::{AccountId, PayoutId, Rail};
use crate::domain::money::Money;
use crate::domain::payout::PayoutStatus;

/// Money one rail paid on one UTC day, in one currency (summed in minor units by the
/// database, so the total is exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidDay {
    pub day: NaiveDate,
    pub rail: Rail,
    pub amount: Money,
}

/// Why a payout waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttentionReason {
    /// An operator asked for an action that a second operator must approve.
    PendingApproval,
    /// The provider reported the payment disputed; an operator books how it ended.
    Disputed,
    /// Attempts ran out or the provider's records disagree.
    NeedsOperator,
    /// Held by a cooling-off after a payout method changed; an operator may release it.
    CoolingOff,
    /// Held by a review rule (an operator approves or rejects it) or for a tax form.
    Review,
}

impl AttentionReason {
    pub const ALL: [AttentionReason; 5] = [
        AttentionReason::PendingApproval,
        AttentionReason::Review,
        AttentionReason::Disputed,
        AttentionReason::NeedsOperator,
        AttentionReason::CoolingOff,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AttentionReason::PendingApproval => "Pending approval",
            AttentionReason::Disputed => "Disputed",
            AttentionReason::NeedsOperator => "Needs an operator",
            AttentionReason::CoolingOff => "Held in cooling-off",
            AttentionReason::Review => "Held for review or a tax form",
        }
    }
}

/// One payout waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attention {
    pub reason: AttentionReason,
    pub payout: PayoutId,
    pub account: AccountId,
    pub rail: Rail,
    pub amount: Money,
    pub status: PayoutStatus,
    pub created_at: DateTime<Utc>,
    /// The payout's last error, or until when a hold lasts.
    pub note: Option<String>,
}
