//! Reconciliation rules: what a provider's own record of money moved looks like, what each
//! disagreement between it and our payouts means, and how bad it is. Pure: the matching runs
//! set-based in SQL (`storage::sql::reconcile`), but every rule it applies is decided here.

mod exception;
mod period;

pub use exception::{Exception, ExceptionId, ExceptionKind, Resolution, Severity, Side, explain};
pub use period::{FIRST_DAY, LAST_DAY, Period, PeriodError, Tolerances};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::Rail;
use super::money::Money;
use super::payout::PayoutStatus;
use super::tracking::RailState;

/// What kind of object a provider record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A transfer to a payee's own account (Stripe, Wise).
    Transfer,
    /// Stripe payout from the platform balance to its own bank. Not a referral payout: it is
    /// counted in the totals but never matched.
    BankPayout,
    /// One item of a PayPal payout batch.
    BatchItem,
    /// PartnerStack reward.
    Reward,
}

impl RecordKind {
    pub fn code(self) -> &'static str {
        match self {
            RecordKind::Transfer => "transfer",
            RecordKind::BankPayout => "bank_payout",
            RecordKind::BatchItem => "batch_item",
            RecordKind::Reward => "reward",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            RecordKind::Transfer,
            RecordKind::BankPayout,
            RecordKind::BatchItem,
            RecordKind::Reward,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// Whether records of this kind are money we paid to a payee (and so must match a payout).
    pub fn is_payee_money(self) -> bool {
        !matches!(self, RecordKind::BankPayout)
    }
}

/// One movement of money as the provider itself records it: read from its API or from a
/// statement file. Everything the matching needs, in the provider's own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub rail: Rail,
    pub kind: RecordKind,
    /// The provider's id for it (`tr_…`, PayPal payout_item_id, Wise transfer id, reward key).
    pub record_id: String,
    /// Our token as the provider echoes it back: Stripe transfer_group, PayPal
    /// sender_batch_id, Wise customerTransactionId, PartnerStack reward key. Matched against
    /// the rail reference (`providers::RailFacts::reference`) of our attempts.
    pub reference: Option<String>,
    /// Our payout id where the provider echoes it separately (PayPal sender_item_id, Stripe
    /// metadata[payout_id], a statement's reference column).
    pub payout_hint: Option<String>,
    /// The provider's grouping of several records (PayPal payout_batch_id): one group may
    /// answer several of our payouts.
    pub group_id: Option<String>,
    /// Who received it, in the rail's destination form (acct_…, email, recipient id,
    /// partner key).
    pub payee: String,
    /// The amount the payee was sent, positive, exact.
    pub amount: Money,
    /// The provider's state, in our terms.
    pub state: RailState,
    /// The provider's own word for the state.
    pub provider_status: String,
    pub created_at: DateTime<Utc>,
}

/// Whether our payout's status and the provider's state say the same thing about the money.
/// Unsettled payouts (a send or a lookup still running, or waiting for an operator) agree with
/// anything: the payout job is the one that settles them.
pub fn status_agrees(ours: PayoutStatus, theirs: RailState) -> bool {
    use PayoutStatus as P;
    use RailState as R;
    match ours {
        P::Paid => theirs == R::Paid,
        P::Processing => matches!(theirs, R::InFlight | R::Paid),
        P::Returned | P::Failed => matches!(theirs, R::Returned | R::Failed),
        P::Queued | P::RetryScheduled | P::Held => matches!(theirs, R::Failed | R::Returned),
        P::Submitting | P::OutcomeUnknown | P::NeedsOperator => true,
    }
}

/// Whether a provider record in this state means money is (or is on its way to being) with
/// the payee. Two such records for one payout are a duplicate payment.
pub fn money_left(state: RailState) -> bool {
    matches!(
        state,
        RailState::Paid | RailState::InFlight | RailState::Disputed
    )
}

/// Whether we believe a payout reached the provider, so a provider record must exist for it.
pub fn expected_at_provider(status: PayoutStatus) -> bool {
    matches!(
        status,
        PayoutStatus::Processing | PayoutStatus::Paid | PayoutStatus::Returned
    )
}

/// A disagreement in status is critical when the provider says money left and our books say
/// it did not: the payee could be paid again.
pub fn status_severity(ours: PayoutStatus, theirs: RailState) -> Severity {
    let ours_says_no_money_left = matches!(
        ours,
        PayoutStatus::Failed
            | PayoutStatus::Returned
            | PayoutStatus::Queued
            | PayoutStatus::RetryScheduled
            | PayoutStatus::Held
    );
    if ours_says_no_money_left && money_left(theirs) {
        Severity::Critical
    } else {
        Severity::High
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_pair_has_a_verdict_and_a_severity() {
        for ours in PayoutStatus::ALL {
            for theirs in RailState::ALL {
                let agrees = status_agrees(ours, theirs);
                if !agrees {
                    let sev = status_severity(ours, theirs);
                    if ours == PayoutStatus::Failed && theirs == RailState::Paid {
                        assert_eq!(sev, Severity::Critical);
                    }
                }
            }
        }
        assert!(status_agrees(PayoutStatus::Paid, RailState::Paid));
        assert!(!status_agrees(PayoutStatus::Paid, RailState::Returned));
        assert!(status_agrees(PayoutStatus::Processing, RailState::Paid));
        assert!(!status_agrees(PayoutStatus::Failed, RailState::InFlight));
        assert!(status_agrees(PayoutStatus::OutcomeUnknown, RailState::Paid));
    }

    #[test]
    fn only_money_that_left_counts_towards_a_duplicate() {
        assert!(money_left(RailState::Paid) && money_left(RailState::InFlight));
        assert!(!money_left(RailState::Failed) && !money_left(RailState::Returned));
    }

    #[test]
    fn record_kinds_round_trip() {
        for k in [
            RecordKind::Transfer,
            RecordKind::BankPayout,
            RecordKind::BatchItem,
            RecordKind::Reward,
        ] {
            assert_eq!(RecordKind::from_code(k.code()), Some(k));
        }
        assert!(!RecordKind::BankPayout.is_payee_money());
    }
}
