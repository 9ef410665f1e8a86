//! The one table of payout moves (no I/O). Every write of a payout's status (a worker's step,
//! a provider reading from a webhook or a poll) passes [`check`] first, in the transaction
//! that writes it, so a move the table does not list can never be stored, whatever decided it.
//!
//! Staying in the same status is not a move and is always allowed (a poll that saw nothing
//! new, a second attempt after the first was proven absent).

use std::fmt;

use super::status::PayoutStatus::{self, *};

/// Who moves a payout. A provider reading may only settle what the provider holds; a worker
/// also sends, retries and hands a payout to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mover {
    /// A worker's step: a send, a lookup or a poll, under the payout's lease.
    Worker,
    /// A provider reading applied outside a step (a webhook, a reconciliation reading).
    Provider,
    /// An operator's action (`domain::operator`), with a reason, on the record.
    Operator,
    /// The platform's own records: a tax form arrived that a held payout waited for.
    Platform,
}

impl fmt::Display for Mover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mover::Worker => "a worker step",
            Mover::Provider => "a provider reading",
            Mover::Operator => "an operator",
            Mover::Platform => "the platform's records",
        })
    }
}

/// Why a move is allowed, for the reader of the table.
const W: &[Mover] = &[Mover::Worker];
const WP: &[Mover] = &[Mover::Worker, Mover::Provider];
const O: &[Mover] = &[Mover::Operator];
const OR: &[Mover] = &[Mover::Operator, Mover::Platform];

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
    // An operator acts where the worker stopped (`domain::operator`): a retry, proof first
    // where an attempt may have landed; a cancel or a payment outside the rails, only when
    // nothing can land; a dispute booked as kept (paid) or returned.
    (NeedsOperator, RetryScheduled, O),
    (NeedsOperator, OutcomeUnknown, O),
    (NeedsOperator, Failed, O),
    (NeedsOperator, Paid, O),
    (NeedsOperator, Returned, O),
    (Queued, Failed, O),
    (Queued, Paid, O),
    // A held payout (`domain::review`) waits for an operator's approval (it is then sent) or
    // rejection (the hold is voided), or for the tax form it lacks (released by the record).
    (Held, Queued, OR),
    (Held, Failed, O),
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
    use crate::domain::ids::Rail;
    use crate::domain::payout::{LookupFinding, RetryPolicy, SendDecision};
    use crate::domain::step::{self, AfterLookup};
    use crate::domain::tracking::tests::any_state;
    use crate::domain::tracking::{Observation, RailState, Tracked, track};
    use proptest::prelude::*;

    /// The whole table as a matrix: a change to it shows up here as a reviewed diff.
    #[test]
    fn the_table_is_exactly_this() {
        let letter = |from, to| match (
            allowed(from, to, Mover::Worker),
            allowed(from, to, Mover::Provider),
            allowed(from, to, Mover::Operator),
            allowed(from, to, Mover::Platform),
        ) {
            _ if from == to => '=',
            (true, true, false, false) => 'B',
            (true, false, false, false) => 'W',
            (false, true, false, false) => 'P',
            (false, false, true, false) => 'O',
            (false, false, true, true) => 'R',
            (false, false, false, false) => '.',
            _ => '?',
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
        // returned failed needs_operator held. W: worker only, B: worker or provider
        // reading, O: operator only, R: operator or the platform's records (a tax form).
        assert_eq!(
            matrix,
            [
                "queued          =W...O.OW.",
                "submitting      .=WWWWWWW.",
                "retry_scheduled .W=.....W.",
                "outcome_unknown .WW=WWWWW.",
                "processing      ....=B.BB.",
                "paid            .....=B.B.",
                "returned        ......=.B.",
                "failed          .......=B.",
                "needs_operator  ..OO.OOO=.",
                "held            R......O.=",
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

    fn any_finding() -> impl Strategy<Value = Result<LookupFinding, String>> {
        prop_oneof![
            any_state().prop_map(|s| Ok(LookupFinding::Landed {
                provider_ref: "tr_1".into(),
                observation: Observation::new(s, "s"),
            })),
            Just(Ok(LookupFinding::Absent)),
            Just(Ok(LookupFinding::Refused { reason: "r".into() })),
            Just(Ok(LookupFinding::Unprovable { reason: "u".into() })),
            Just(Ok(LookupFinding::Duplicate {
                provider_refs: vec!["tr_1".into(), "tr_2".into()]
            })),
            Just(Ok(LookupFinding::Pending {
                reason: "p".into(),
                retry_in: Duration::from_secs(1)
            })),
            Just(Err("timeout".to_string())),
        ]
    }

    /// One event in a payout's life; what it does is decided by the domain's own functions.
    #[derive(Debug, Clone)]
    enum Event {
        Send(SendDecision),
        Lookup(Result<LookupFinding, String>),
        Poll(Result<RailState, String>),
        Reading(RailState),
        RailMissing,
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            any_decision().prop_map(Event::Send),
            any_finding().prop_map(Event::Lookup),
            any_state().prop_map(|s| Event::Poll(Ok(s))),
            Just(Event::Poll(Err("down".into()))),
            any_state().prop_map(Event::Reading),
            Just(Event::RailMissing),
        ]
    }

    /// A payout as the property test tracks it.
    struct Life {
        policy: RetryPolicy,
        status: PayoutStatus,
        used: u32,
        failures: u32,
    }

    impl Life {
        /// Applies `event` through the domain; every move it makes must be in the table.
        fn apply(&mut self, event: &Event) -> Result<(), TestCaseError> {
            let p = self.policy;
            let moved = match event {
                Event::Send(decision) => {
                    if !matches!(self.status, Queued | RetryScheduled) {
                        return Ok(());
                    }
                    self.send(decision)?
                }
                Event::Lookup(found) if self.status.needs_lookup() => {
                    match step::after_lookup(
                        &p,
                        self.used.max(1),
                        found.clone(),
                        self.failures,
                        0.5,
                    ) {
                        AfterLookup::SendNew(_) => self.send(&SendDecision::Unknown {
                            reason: "again".into(),
                        })?,
                        AfterLookup::Step(s) => (s.to, Mover::Worker),
                    }
                }
                Event::Poll(read) if matches!(self.status, Processing | Paid) => {
                    let polled = step::Polled {
                        status: self.status,
                        polls: 0,
                        lookup_failures: self.failures,
                        watch_left: Some(std::time::Duration::from_secs(3600)),
                        provider_status: None,
                    };
                    let read = read.clone().map(|s| Observation::new(s, "s"));
                    (step::after_poll(&p, polled, read).to, Mover::Worker)
                }
                Event::Reading(state) => {
                    match track(self.status, None, &Observation::new(*state, "s")) {
                        Tracked::Unchanged => return Ok(()),
                        Tracked::Move { to, .. } => (to, Mover::Provider),
                        Tracked::Conflict { .. } => (NeedsOperator, Mover::Provider),
                    }
                }
                Event::RailMissing if self.status.is_active() => {
                    match step::rail_not_configured(self.status, Rail::Stripe) {
                        Some(s) => (s.to, Mover::Worker),
                        None => return Ok(()),
                    }
                }
                _ => return Ok(()),
            };
            let (to, by) = moved;
            prop_assert!(
                allowed(self.status, to, by),
                "{} -> {to} by {by} on {event:?}",
                self.status
            );
            self.failures = if to == self.status {
                self.failures + 1
            } else {
                0
            };
            self.status = to;
            Ok(())
        }

        /// A send: the escalation when attempts are used up, else through `submitting`.
        fn send(
            &mut self,
            decision: &SendDecision,
        ) -> Result<(PayoutStatus, Mover), TestCaseError> {
            let p = self.policy;
            if let Some(s) = step::attempts_exhausted(&p, self.used, None, None) {
                return Ok((s.to, Mover::Worker));
            }
            prop_assert!(
                allowed(self.status, Submitting, Mover::Worker),
                "{} -> submitting",
                self.status
            );
            self.status = Submitting;
            let s = step::after_send(&p, self.used + 1, self.used, decision, 0.5);
            self.used += u32::from(step::AttemptOutcome::of(decision).uses_an_attempt());
            Ok((s.to, Mover::Worker))
        }
    }

    proptest! {
        /// Random lives of a payout, every step decided by the domain (sends, lookups,
        /// polls, webhook readings, escalations): each move it makes is one the table allows.
        #[test]
        fn the_domain_only_makes_moves_the_table_allows(
            events in proptest::collection::vec(any_event(), 1..60),
            max_attempts in 1u32..5,
        ) {
            let policy = RetryPolicy { max_attempts, ..RetryPolicy::default() };
            let mut life = Life { policy, status: Queued, used: 0, failures: 0 };
            for event in &events {
                life.apply(event)?;
            }
        }
    }
}
