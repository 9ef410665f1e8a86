//! What a provider says about money we sent, in our terms (no I/O).
//!
//! Every rail maps its own status vocabulary onto [`RailState`] with a table in its module;
//! [`track`] then decides what a fresh observation does to a payout. Observations may arrive
//! late, twice or out of order (webhooks and polls race), so the rule is monotonic: a payout
//! only moves forward, and the one move allowed after success is the money coming back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::TransactionStatus;
use super::status::PayoutStatus;

/// A provider status mapped to what it means for the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RailState {
    /// Accepted, not yet delivered (pending, processing, unclaimed, on hold, bounced back).
    InFlight,
    /// Delivered to the payee.
    Paid,
    /// Never delivered and never will be; the money is (or stays) ours.
    Failed,
    /// Was delivered, then came back to us (returned, refunded, reversed, funds_refunded).
    Returned,
    /// The provider reports a state whose meaning for the money is not confirmed (e.g.
    /// PartnerStack `failed`): neither crediting the payee again nor calling it paid is safe,
    /// so an operator decides, with the hold left as it is.
    Disputed,
}

impl RailState {
    pub const ALL: [RailState; 5] = [
        RailState::InFlight,
        RailState::Paid,
        RailState::Failed,
        RailState::Returned,
        RailState::Disputed,
    ];

    /// The stored code (also the serde name).
    pub fn code(self) -> &'static str {
        match self {
            RailState::InFlight => "in_flight",
            RailState::Paid => "paid",
            RailState::Failed => "failed",
            RailState::Returned => "returned",
            RailState::Disputed => "disputed",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One reading of a provider object's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub state: RailState,
    /// The provider's own word for it, e.g. `UNCLAIMED` or `outgoing_payment_sent`.
    pub provider_status: String,
    /// Failure code or other detail worth showing an operator.
    pub detail: Option<String>,
    /// When the provider says the state began, if it says.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl Observation {
    pub fn new(state: RailState, provider_status: impl Into<String>) -> Self {
        Observation {
            state,
            provider_status: provider_status.into(),
            detail: None,
            occurred_at: None,
        }
    }

    pub fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    pub fn at(mut self, occurred_at: Option<DateTime<Utc>>) -> Self {
        self.occurred_at = occurred_at;
        self
    }

    /// `UNCLAIMED (RECEIVER_UNREGISTERED)`-style text for events.
    pub fn describe(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} ({d})", self.provider_status),
            None => self.provider_status.clone(),
        }
    }
}

/// What a payout's move does to its hold in the ledger. One decision for every writer: a
/// worker's step and a provider reading alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerEffect {
    None,
    /// Delivered: the pending hold becomes a posted payout.
    PostHold,
    /// Never delivered: the pending hold is released.
    VoidHold,
    /// Delivered earlier, now back: a posted reversal credits the payee's balance again.
    Reverse,
    /// The provider contradicts a failure or return we booked (it says paid): a posted
    /// correction takes the money out of the balance again, so it cannot be withdrawn twice
    /// while an operator looks.
    Correct,
}

/// The ledger writes an effect makes, given where the hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HoldWrites {
    /// Resolve the pending hold to this status.
    pub resolve: Option<TransactionStatus>,
    /// Post a reversal of the hold.
    pub reverse: bool,
    /// Post a correction mirroring the hold.
    pub correct: bool,
}

impl LedgerEffect {
    /// The effect of a payout reaching `to`.
    pub fn of_move(to: PayoutStatus) -> LedgerEffect {
        match to {
            PayoutStatus::Paid => LedgerEffect::PostHold,
            PayoutStatus::Failed => LedgerEffect::VoidHold,
            PayoutStatus::Returned => LedgerEffect::Reverse,
            _ => LedgerEffect::None,
        }
    }

    /// What to write when the hold is `hold`: a hold leaves pending once, and a return of a
    /// payout whose hold is still pending posts it first, so the reversal has something to
    /// reverse.
    pub fn writes(self, hold: TransactionStatus) -> HoldWrites {
        let pending = hold == TransactionStatus::Pending;
        let resolve = |to| HoldWrites {
            resolve: pending.then_some(to),
            ..HoldWrites::default()
        };
        match self {
            LedgerEffect::None => HoldWrites::default(),
            LedgerEffect::PostHold => resolve(TransactionStatus::Posted),
            LedgerEffect::VoidHold => resolve(TransactionStatus::Voided),
            LedgerEffect::Reverse => HoldWrites {
                reverse: true,
                ..resolve(TransactionStatus::Posted)
            },
            LedgerEffect::Correct => HoldWrites {
                correct: true,
                ..HoldWrites::default()
            },
        }
    }
}

/// The decision [`track`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// Nothing to change: same state, a stale reading, or a payout a worker step owns.
    Unchanged,
    Move {
        to: PayoutStatus,
        ledger: LedgerEffect,
        reason: String,
    },
    /// The provider contradicts a final state we already booked (e.g. paid after we recorded
    /// a failure): the ledger no longer matches the money, so an operator must look.
    Conflict { reason: String },
}

/// Whether a reading that moves nothing is still worth a line in the payout's history: it is
/// not older than the last one applied and says something new (PayPal's UNCLAIMED, Wise's
/// funds_converted, ...).
pub fn worth_noting(
    last_status: Option<&str>,
    last_seen_at: Option<DateTime<Utc>>,
    obs: &Observation,
) -> bool {
    let stale = matches!((last_seen_at, obs.occurred_at), (Some(seen), Some(at)) if at < seen);
    !stale && last_status != Some(obs.provider_status.as_str())
}

/// Applies an observation to a payout in `current`, whose last applied provider reading
/// began at `last_seen_at`. Monotonic: readings older than the last one change nothing,
/// and a final state only ever moves from paid to returned.
pub fn track(
    current: PayoutStatus,
    last_seen_at: Option<DateTime<Utc>>,
    obs: &Observation,
) -> Tracked {
    if let (Some(seen), Some(at)) = (last_seen_at, obs.occurred_at)
        && at < seen
    {
        return Tracked::Unchanged;
    }
    let seen = obs.describe();
    let moved = |to, ledger, reason: String| {
        debug_assert_eq!(
            ledger,
            LedgerEffect::of_move(to),
            "one ledger rule per move"
        );
        Tracked::Move { to, ledger, reason }
    };
    match (current, obs.state) {
        (PayoutStatus::Processing, RailState::Paid) => moved(
            PayoutStatus::Paid,
            LedgerEffect::PostHold,
            format!("provider delivered the payment: {seen}"),
        ),
        (PayoutStatus::Processing, RailState::Failed) => moved(
            PayoutStatus::Failed,
            LedgerEffect::VoidHold,
            format!(
                "provider could not deliver the payment: {seen}; the amount is available again"
            ),
        ),
        // Returned before it was ever delivered (PayPal UNCLAIMED -> RETURNED): never paid.
        (PayoutStatus::Processing, RailState::Returned) => moved(
            PayoutStatus::Failed,
            LedgerEffect::VoidHold,
            format!("payment came back before delivery: {seen}; the amount is available again"),
        ),
        (PayoutStatus::Paid, RailState::Returned | RailState::Failed) => moved(
            PayoutStatus::Returned,
            LedgerEffect::Reverse,
            format!("money came back after delivery: {seen}; the payout is reversed"),
        ),
        (PayoutStatus::Processing | PayoutStatus::Paid, RailState::Disputed) => moved(
            PayoutStatus::NeedsOperator,
            LedgerEffect::None,
            format!(
                "provider reports {seen}, which may or may not mean the money came back; \
                 the amount stays out of the balance until an operator checks"
            ),
        ),
        (PayoutStatus::Failed | PayoutStatus::Returned, RailState::Paid) => Tracked::Conflict {
            reason: format!(
                "CRITICAL: provider reports {seen} for a payout booked as {current}; the ledger does not match the money"
            ),
        },
        _ => Tracked::Unchanged,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obs(state: RailState) -> Observation {
        Observation::new(state, format!("{state:?}"))
    }

    #[test]
    fn processing_settles_with_the_right_ledger_effect() {
        let cases = [
            (RailState::InFlight, None),
            (
                RailState::Paid,
                Some((PayoutStatus::Paid, LedgerEffect::PostHold)),
            ),
            (
                RailState::Failed,
                Some((PayoutStatus::Failed, LedgerEffect::VoidHold)),
            ),
            (
                RailState::Returned,
                Some((PayoutStatus::Failed, LedgerEffect::VoidHold)),
            ),
        ];
        for (state, want) in cases {
            let got = match track(PayoutStatus::Processing, None, &obs(state)) {
                Tracked::Move { to, ledger, .. } => Some((to, ledger)),
                Tracked::Unchanged => None,
                Tracked::Conflict { reason } => panic!("unexpected conflict {reason}"),
            };
            assert_eq!(got, want, "{state:?}");
        }
    }

    #[test]
    fn only_a_return_moves_a_paid_payout() {
        assert_eq!(
            track(PayoutStatus::Paid, None, &obs(RailState::InFlight)),
            Tracked::Unchanged
        );
        assert_eq!(
            track(PayoutStatus::Paid, None, &obs(RailState::Paid)),
            Tracked::Unchanged
        );
        assert!(matches!(
            track(PayoutStatus::Paid, None, &obs(RailState::Returned)),
            Tracked::Move {
                to: PayoutStatus::Returned,
                ledger: LedgerEffect::Reverse,
                ..
            }
        ));
    }

    #[test]
    fn a_hold_leaves_pending_once() {
        use TransactionStatus::{Pending, Posted, Voided};
        let post = LedgerEffect::of_move(PayoutStatus::Paid);
        assert_eq!(post.writes(Pending).resolve, Some(Posted));
        assert_eq!(post.writes(Posted), HoldWrites::default());
        let void = LedgerEffect::of_move(PayoutStatus::Failed);
        assert_eq!(void.writes(Pending).resolve, Some(Voided));
        assert_eq!(void.writes(Voided), HoldWrites::default());
        let back = LedgerEffect::of_move(PayoutStatus::Returned);
        assert_eq!(
            back.writes(Pending),
            HoldWrites {
                resolve: Some(Posted),
                reverse: true,
                correct: false
            }
        );
        assert_eq!(back.writes(Posted).resolve, None);
        assert!(LedgerEffect::Correct.writes(Voided).correct);
        for status in PayoutStatus::ALL {
            if !matches!(
                status,
                PayoutStatus::Paid | PayoutStatus::Failed | PayoutStatus::Returned
            ) {
                assert_eq!(
                    LedgerEffect::of_move(status),
                    LedgerEffect::None,
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn paid_after_failure_is_a_conflict() {
        assert!(matches!(
            track(PayoutStatus::Failed, None, &obs(RailState::Paid)),
            Tracked::Conflict { .. }
        ));
    }

    #[test]
    fn only_fresh_news_is_noted() {
        let now = Utc::now();
        let unclaimed = Observation::new(RailState::InFlight, "UNCLAIMED").at(Some(now));
        assert!(worth_noting(Some("PENDING"), None, &unclaimed));
        assert!(!worth_noting(Some("UNCLAIMED"), None, &unclaimed));
        let later = now + chrono::Duration::seconds(1);
        assert!(!worth_noting(Some("PENDING"), Some(later), &unclaimed));
    }

    #[test]
    fn stale_readings_change_nothing() {
        let now = Utc::now();
        let old = obs(RailState::Returned).at(Some(now - chrono::Duration::seconds(5)));
        assert_eq!(
            track(PayoutStatus::Paid, Some(now), &old),
            Tracked::Unchanged
        );
    }

    /// Any provider reading's state, for property tests here and in `transition`.
    pub(crate) fn any_state() -> impl Strategy<Value = RailState> {
        prop_oneof![
            Just(RailState::InFlight),
            Just(RailState::Paid),
            Just(RailState::Failed),
            Just(RailState::Returned),
            Just(RailState::Disputed),
        ]
    }

    proptest! {
        /// Whatever order readings arrive in, the hold is resolved at most once and reversed
        /// at most once, and only after it was posted.
        #[test]
        fn ledger_effects_stay_consistent(readings in proptest::collection::vec(any_state(), 0..12)) {
            let mut status = PayoutStatus::Processing;
            let (mut posted, mut voided, mut reversed) = (0, 0, 0);
            for r in readings {
                if let Tracked::Move { to, ledger, .. } = track(status, None, &obs(r)) {
                    match ledger {
                        LedgerEffect::PostHold => posted += 1,
                        LedgerEffect::VoidHold => voided += 1,
                        LedgerEffect::Reverse => { prop_assert_eq!(posted, 1); reversed += 1 }
                        LedgerEffect::None | LedgerEffect::Correct => {}
                    }
                    status = to;
                }
            }
            prop_assert!(posted + voided <= 1);
            prop_assert!(reversed <= 1);
        }
    }
}
