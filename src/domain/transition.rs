//! The one table of payout moves (no I/O). Every write of a payout's status (a worker's step,
//! a provider reading from a webhook or a poll) passes [`check`] first, in the transaction
//! that writes it, so a move the table does not list can never be stored, whatever decided it.
//!
//! Staying in the same status is not a move and is always allowed (a poll that saw nothing
//! new, a second attempt after the first was proven absent).

use std::fmt;

use super::payout::PayoutStatus::{self, *};

/// Who moves a payout. A provider reading may only settle what the provider holds; a worker
/// also sends, retries and hands a payout to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mover {
    /// A worker's step: a send, a lookup or a poll, under the payout's lease.
    Worker,
    /// A provider reading applied outside a step (a webhook, a reconciliation reading).
    Provider,
}

impl fmt::Display for Mover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mover::Worker => "a worker step",
            Mover::Provider => "a provider reading",
        })
    }
}

/// Why a move is allowed, for the reader of the table.
const W: &[Mover] = &[Mover::Worker];
const WP: &[Mover] = &[Mover::Worker, Mover::Provider];

/// Every allowed move: from, to, and who may make it. Reviewed as a whole; a test prints it.
pub const MOVES: &[(PayoutStatus, PayoutStatus, &[Mover])] = &[
    // A payout starts queued; a worker sends it, or hands it over when it cannot be sent
    // (no rail configured, a destination the rail refuses).
    (Queued, Submitting, W),
    (Queued, NeedsOperator, W),
    // An attempt is on the wire: its answer decides.
    (Submitting, RetryScheduled, W),
    (Submitting, OutcomeUnknown, W),
    (Submitting, Processing, W),
    (Submitting, Paid, W),
    (Submitting, Failed, W),
    (Submitting, Returned, W),
    (Submitting, NeedsOperator, W),
    // Provably nothing moved: the next attempt, unless attempts are used up.
    (RetryScheduled, Submitting, W),
    (RetryScheduled, NeedsOperator, W),
    // The outcome is unknown: only a lookup settles it; a new send only after it proved
    // absence, a retry only after the provider refused the same key for good.
    (OutcomeUnknown, Submitting, W),
    (OutcomeUnknown, RetryScheduled, W),
    (OutcomeUnknown, Processing, W),
    (OutcomeUnknown, Paid, W),
    (OutcomeUnknown, Failed, W),
    (OutcomeUnknown, Returned, W),
    (OutcomeUnknown, NeedsOperator, W),
    // The provider holds the payment: only its readings settle it.
    (Processing, Paid, WP),
    (Processing, Failed, WP),
    (Processing, NeedsOperator, WP),
    // Delivered money can come back, or be disputed.
    (Paid, Returned, WP),
    (Paid, NeedsOperator, WP),
    // A provider contradicting a final state we booked: an operator must look.
    (Failed, NeedsOperator, WP),
    (Returned, NeedsOperator, WP),
];

/// A move the table does not allow: a bug in whatever decided it, refused before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a payout in {from} cannot move to {to} by {by}: the transition table does not allow it")]
pub struct Refused {
    pub from: PayoutStatus,
    pub to: PayoutStatus,
    pub by: Mover,
}

/// Whether `by` may move a payout from `from` to `to`.
pub fn allowed(from: PayoutStatus, to: PayoutStatus, by: Mover) -> bool {
    from == to
        || MOVES
            .iter()
            .any(|(f, t, who)| *f == from && *t == to && who.contains(&by))
}

/// The check every status write passes.
pub fn check(from: PayoutStatus, to: PayoutStatus, by: Mover) -> Result<(), Refused> {
    if allowed(from, to, by) {
        Ok(())
    } else {
        Err(Refused { from, to, by })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::payout::{RetryPolicy, SendDecision, after_landing, step_after_send};
    use crate::domain::tracking::{Observation, RailState, Tracked, track};
    use proptest::prelude::*;

    /// The whole table as a matrix: a change to it shows up here as a reviewed diff.
    #[test]
    fn the_table_is_exactly_this() {
        let letter = |from, to| match (
            allowed(from, to, Mover::Worker),
            allowed(from, to, Mover::Provider),
        ) {
            _ if from == to => '=',
            (true, true) => 'B',
            (true, false) => 'W',
            (false, true) => 'P',
            (false, false) => '.',
        };
        let matrix: Vec<String> = PayoutStatus::ALL
            .iter()
            .map(|from| {
                let row: String = PayoutStatus::ALL
                    .iter()
                    .map(|to| letter(*from, *to))
                    .collect();
                format!("{:<16}{row}", from.code())
            })
            .collect();
        // Columns: queued submitting retry_scheduled outcome_unknown processing paid
        // returned failed needs_operator. W: worker only, B: worker or provider reading.
        assert_eq!(
            matrix,
            [
                "queued          =W......W",
                "submitting      .=WWWWWWW",
                "retry_scheduled .W=.....W",
                "outcome_unknown .WW=WWWWW",
                "processing      ....=B.BB",
                "paid            .....=B.B",
                "returned        ......=.B",
                "failed          .......=B",
                "needs_operator  ........=",
            ]
        );
    }

    #[test]
    fn no_move_is_listed_twice_or_as_a_stay() {
        for (i, (f, t, who)) in MOVES.iter().enumerate() {
            assert_ne!(f, t, "{f} -> {t} is a stay, not a move");
            assert!(!who.is_empty());
            assert!(
                !MOVES[i + 1..].iter().any(|(f2, t2, _)| f2 == f && t2 == t),
                "{f} -> {t} twice"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_move_and_who_tried_it() {
        let e = check(Paid, Submitting, Mover::Worker).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a payout in paid cannot move to submitting by a worker step: the transition table does not allow it"
        );
        assert!(check(Queued, Paid, Mover::Provider).is_err());
        assert!(check(Processing, Paid, Mover::Provider).is_ok());
        assert!(check(NeedsOperator, NeedsOperator, Mover::Provider).is_ok());
    }

    fn any_state() -> impl Strategy<Value = RailState> {
        prop_oneof![
            Just(RailState::InFlight),
            Just(RailState::Paid),
            Just(RailState::Failed),
            Just(RailState::Returned),
            Just(RailState::Disputed),
        ]
    }

    fn any_decision() -> impl Strategy<Value = SendDecision> {
        let reason = || Just("r".to_string());
        prop_oneof![
            any_state().prop_map(|s| SendDecision::Landed {
                provider_ref: "tr_1".into(),
                observation: Observation::new(s, "s"),
            }),
            reason().prop_map(|reason| SendDecision::Retry {
                reason,
                retry_after: None
            }),
            reason().prop_map(|reason| SendDecision::Throttled {
                reason,
                retry_after: Some(Duration::from_secs(1))
            }),
            reason().prop_map(|reason| SendDecision::Unknown { reason }),
            reason().prop_map(|reason| SendDecision::Permanent { reason }),
        ]
    }

    /// One event in a payout's life, decided by the domain's own functions.
    #[derive(Debug, Clone)]
    enum Event {
        Send(SendDecision),
        Lookup(RailState),
        Reading(RailState),
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            any_decision().prop_map(Event::Send),
            any_state().prop_map(Event::Lookup),
            any_state().prop_map(Event::Reading),
        ]
    }

    /// Where the domain sends a payout in `status` on `event`, and who moves it; `None` when
    /// the event does not apply in that status (a worker sends only from a sendable status).
    fn next(
        policy: &RetryPolicy,
        status: PayoutStatus,
        used: u32,
        event: &Event,
    ) -> Option<(PayoutStatus, Mover)> {
        match event {
            Event::Send(decision) => {
                let sendable = matches!(status, Queued | RetryScheduled | OutcomeUnknown);
                sendable.then(|| {
                    let step = step_after_send(policy, used + 1, used + 1, decision, 0.5);
                    (step.status, Mover::Worker)
                })
            }
            Event::Lookup(state) => status.needs_lookup().then(|| {
                let observation = Observation::new(*state, "s");
                let step = after_landing(policy, "tr_1", &observation, "lookup");
                (step.status, Mover::Worker)
            }),
            Event::Reading(state) => match track(status, None, &Observation::new(*state, "s")) {
                Tracked::Unchanged => None,
                Tracked::Move { to, .. } => Some((to, Mover::Provider)),
                Tracked::Conflict { .. } => Some((NeedsOperator, Mover::Provider)),
            },
        }
    }

    proptest! {
        /// Random lives of a payout, every step decided by the domain: each move the domain
        /// makes is one the table allows (a send moves through `submitting` first).
        #[test]
        fn the_domain_only_makes_moves_the_table_allows(
            events in proptest::collection::vec(any_event(), 1..40),
            max_attempts in 1u32..5,
        ) {
            let policy = RetryPolicy { max_attempts, ..RetryPolicy::default() };
            let mut status = Queued;
            let mut used = 0;
            for event in &events {
                let Some((to, by)) = next(&policy, status, used, event) else {
                    continue;
                };
                if let Event::Send(_) = event {
                    prop_assert!(allowed(status, Submitting, Mover::Worker), "{status} -> submitting");
                    status = Submitting;
                    used += 1;
                }
                prop_assert!(allowed(status, to, by), "{status} -> {to} by {by} on {event:?}");
                status = to;
            }
        }
    }
}
