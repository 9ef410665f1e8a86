//! What an operator may do to a payout that needs a human, and what it does (no I/O).
//!
//! Each action is allowed only from the states where it is safe, and the moves it makes are
//! rows of the one transition table (`Mover::Operator`). The rule behind all of them: never a
//! second payment that could land beside the first. An attempt whose outcome is unknown is
//! settled by the worker's proof (a same-key replay inside the provider's window, or a lookup
//! by our token), never by an operator's guess.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::Money;
use super::status::PayoutStatus;
use super::step::AttemptOutcome;
use super::tracking::LedgerEffect;

/// An operator's action on one payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let the worker try again: a new attempt where nothing can have landed, else a proof
    /// first (the payout goes back to `outcome_unknown`). A fresh attempt budget.
    Retry,
    /// Void the hold: the money is the payee's to withdraw again. Only when nothing can land.
    Cancel,
    /// Paid outside the rails (the operator's `reference`, e.g. a bank transfer id): posts
    /// the hold. Only when nothing can land.
    MarkPaid { reference: String },
    /// End a cooling-off hold early: the payout is sent now.
    ReleaseHold,
    /// Book what a disputed payout's provider reported (a partial reversal, a dispute) once
    /// an operator knows how it ended.
    ResolveDispute { outcome: DisputeOutcome },
    /// Book a second payment that landed for the payout (`object`, the provider's id for it)
    /// as the payee's debt or the company's loss. The payout itself is unchanged.
    ResolveDuplicate {
        object: String,
        booking: DuplicateBooking,
    },
    /// A held payout's review flags are judged fine: it is sent (unless a tax form is still
    /// missing).
    Approve,
    /// A held payout is refused: its hold is voided and, with `clawback`, the commissions
    /// behind it are taken back from the payee's balance.
    Reject { clawback: bool },
}

/// Who bears a duplicate payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateBooking {
    /// The payee owes it back: their balance goes negative and later earnings repay it.
    Owed,
    /// The company writes it off (a loss book, not the program's commission cost).
    Loss,
}

impl DuplicateBooking {
    pub fn code(self) -> &'static str {
        match self {
            DuplicateBooking::Owed => "owed",
            DuplicateBooking::Loss => "loss",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [DuplicateBooking::Owed, DuplicateBooking::Loss]
            .into_iter()
            .find(|b| b.code() == code)
    }
}

/// A provider object that named the payout without being its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateFact {
    pub object: String,
    /// The provider's last word on it says money is with the payee.
    pub money_left: bool,
    /// Already booked by an operator, and how.
    pub booked: Option<DuplicateBooking>,
}

/// How a dispute ended, as the operator books it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeOutcome {
    /// The payee kept the money: the payout is paid.
    Kept,
    /// The money came back: the payout is returned and the payee's balance credited.
    Returned,
    /// Part of it came back (`amount`, in the payout's currency): the payout is paid, and the
    /// part is credited back to the payee's balance.
    PartReturned { amount: Decimal },
}

impl DisputeOutcome {
    pub fn code(self) -> &'static str {
        match self {
            DisputeOutcome::Kept => "kept",
            DisputeOutcome::Returned => "returned",
            DisputeOutcome::PartReturned { .. } => "part_returned",
        }
    }

    /// `kept` or `returned`; a part returned also needs its amount ([`Self::with_amount`]).
    pub fn from_code(code: &str) -> Option<Self> {
        [DisputeOutcome::Kept, DisputeOutcome::Returned]
            .into_iter()
            .find(|o| o.code() == code)
    }

    /// `returned` with an amount is a part returned; `kept` takes none.
    pub fn with_amount(code: &str, amount: Option<Decimal>) -> Option<Self> {
        match (DisputeOutcome::from_code(code)?, amount) {
            (DisputeOutcome::Returned, Some(amount)) => {
                Some(DisputeOutcome::PartReturned { amount })
            }
            (outcome, None) => Some(outcome),
            (_, Some(_)) => None,
        }
    }
}

/// Money an action books beside the payout's own hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booking {
    /// A second payment that landed for the payout (`object`), and who bears it.
    Duplicate {
        object: String,
        booking: DuplicateBooking,
    },
    /// Part of a delivered payout came back: credited to the payee.
    PartReturned(Money),
    /// A review decision: the held payout's flags it clears, and with a rejection the amount
    /// clawed back from the payee (`None`: the money stays the payee's).
    Review {
        verdict: super::review::Verdict,
        clawback: Option<Money>,
    },
}

impl Action {
    pub fn code(&self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::MarkPaid { .. } => "mark_paid",
            Action::ReleaseHold => "release_hold",
            Action::ResolveDispute { .. } => "resolve_dispute",
            Action::ResolveDuplicate { .. } => "resolve_duplicate",
            Action::Approve => "approve",
            Action::Reject { .. } => "reject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An action as an operator asks for it: what, why, and who (the acting key's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub action: Action,
    pub reason: String,
    pub actor: String,
}

/// Whether `action` on a payout of `amount` needs a second operator: the actions that move
/// money or give up on it (retry, cancel, mark-paid, resolve-dispute, resolve-duplicate) above the configured
/// amount.
pub fn needs_approval(action: &Action, amount: &Money, above: Option<Decimal>) -> bool {
    let weighty = !matches!(action, Action::ReleaseHold);
    weighty && above.is_some_and(|limit| amount.amount() > limit)
}

/// Whether `approver` may approve or reject a request `requested_by` made: never the same.
pub fn check_second_operator(requested_by: &str, approver: &str) -> Result<(), Refusal> {
    if requested_by == approver {
        Err(Refusal::SameOperator)
    } else {
        Ok(())
    }
}

/// One attempt, as far as an action needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFact {
    pub attempt: u32,
    /// `None`: the stored outcome is not one we know (treated as "may have landed").
    pub outcome: Option<AttemptOutcome>,
}

/// What an action is decided on, loaded in the action's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutFacts {
    pub status: PayoutStatus,
    /// The provider's reference for the payment the payout rests on, once one landed.
    pub provider_ref: Option<String>,
    pub attempts: Vec<AttemptFact>,
    /// When a queued payout may first be sent (a cooling-off hold), if later than now.
    pub held_until: Option<DateTime<Utc>>,
    /// A worker holds the payout's lease right now.
    pub leased: bool,
    pub amount: Money,
    /// The provider's last reading was a dispute (a partial reversal, a chargeback).
    pub disputed: bool,
    /// Other provider objects that named the payout (possible duplicate payments).
    pub duplicates: Vec<DuplicateFact>,
    /// The rules whose flags still hold the payout (`domain::review`).
    pub flags: Vec<super::review::Rule>,
}

/// What an allowed action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub to: PayoutStatus,
    pub ledger: LedgerEffect,
    /// Attempts made so far no longer count against `max_attempts`.
    pub fresh_attempts: bool,
    /// The worker should take the payout up now.
    pub run_now: bool,
    /// The line for the payout's history (the operator's reason is added to it).
    pub summary: String,
    /// Money to book beside the payout's own hold.
    pub book: Option<Booking>,
}

/// Why an action is refused; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{action} is not allowed on a payout that is {status}: {hint}")]
    WrongState {
        action: &'static str,
        status: PayoutStatus,
        hint: &'static str,
    },
    #[error(
        "{action} refused: attempt {attempt}'s outcome is {outcome}, so money may still land; \
         retry first so the worker proves what it did (a same-key replay or a lookup)"
    )]
    MayLand {
        action: &'static str,
        attempt: u32,
        outcome: &'static str,
    },
    #[error(
        "{action} refused: the provider holds a payment for this payout ({provider_ref}); \
         a retry or cancel could pay twice or lose track of it"
    )]
    ProviderHolds {
        action: &'static str,
        provider_ref: String,
    },
    #[error("a worker is stepping this payout right now; try again in a moment")]
    Leased,
    #[error("the payout is not held; there is nothing to release")]
    NotHeld,
    #[error("a reason is required: say why, for whoever reads this payout's history")]
    NoReason,
    #[error("mark-paid needs the external reference of the payment made outside the rails")]
    NoReference,
    #[error(
        "four eyes: the operator who asked for an action cannot approve or reject it; another operator must"
    )]
    SameOperator,
    #[error("action {id} is {state}, not waiting for approval")]
    NotPending { id: String, state: &'static str },
    #[error("no action {0} exists")]
    UnknownAction(String),
    #[error(
        "{object} is not a duplicate of this payout; `payouts payouts duplicates --payout ID` lists the ones seen"
    )]
    UnknownDuplicate { object: String },
    #[error("duplicate {object} is already booked (as {booking}); nothing is booked twice")]
    DuplicateBooked {
        object: String,
        booking: &'static str,
    },
    #[error(
        "duplicate {object} carries no money: its provider's last word is that it failed or came back; resolve its reconciliation exception with a note instead"
    )]
    DuplicateMovedNothing { object: String },
    #[error(
        "a part returned must be more than zero and less than the payout's {payout}, in whole minor units of its currency (all of it is `returned` without an amount); got {part}"
    )]
    BadPart { part: String, payout: String },
    #[error(
        "a bulk action needs a filter (rail, status, reason, age or account); it never means every payout"
    )]
    NoFilter,
}

/// Decides `action` on a payout. `reason` is the operator's, mandatory.
pub fn decide(action: &Action, facts: &PayoutFacts, reason: &str) -> Result<Effect, Refusal> {
    if reason.trim().is_empty() {
        return Err(Refusal::NoReason);
    }
    if facts.leased {
        return Err(Refusal::Leased);
    }
    match action {
        Action::Retry => retry(facts),
        Action::Cancel => {
            nothing_can_land("cancel", facts, CANCEL_FROM)?;
            Ok(Effect {
                to: PayoutStatus::Failed,
                ledger: LedgerEffect::of_move(PayoutStatus::Failed),
                book: None,
                fresh_attempts: false,
                run_now: false,
                summary: "cancelled by an operator; the hold is voided and the amount is \
                          available again"
                    .into(),
            })
        }
        Action::MarkPaid { reference } => {
            if reference.trim().is_empty() {
                return Err(Refusal::NoReference);
            }
            nothing_can_land("mark_paid", facts, CANCEL_FROM)?;
            Ok(Effect {
                to: PayoutStatus::Paid,
                ledger: LedgerEffect::of_move(PayoutStatus::Paid),
                book: None,
                fresh_attempts: false,
                run_now: false,
                summary: format!("marked paid outside the rails (reference {reference})"),
            })
        }
        Action::ReleaseHold => release(facts),
        Action::ResolveDispute { outcome } => resolve_dispute(facts, *outcome),
        Action::ResolveDuplicate { object, booking } => resolve_duplicate(facts, object, *booking),
        Action::Approve => super::review::approve(facts),
        Action::Reject { clawback } => super::review::reject(facts, *clawback),
    }
}

/// A duplicate is booked once, only while the provider says its money is with the payee.
/// The payout keeps its status: its own payment is not in question.
fn resolve_duplicate(
    facts: &PayoutFacts,
    object: &str,
    booking: DuplicateBooking,
) -> Result<Effect, Refusal> {
    let found = facts
        .duplicates
        .iter()
        .find(|d| d.object == object)
        .ok_or_else(|| Refusal::UnknownDuplicate {
            object: object.to_string(),
        })?;
    if let Some(done) = found.booked {
        return Err(Refusal::DuplicateBooked {
            object: object.to_string(),
            booking: done.code(),
        });
    }
    if !found.money_left {
        return Err(Refusal::DuplicateMovedNothing {
            object: object.to_string(),
        });
    }
    let summary = match booking {
        DuplicateBooking::Owed => format!(
            "duplicate payment {object} of {} booked as owed by the payee; later earnings repay it",
            facts.amount
        ),
        DuplicateBooking::Loss => format!(
            "duplicate payment {object} of {} written off as the company's loss",
            facts.amount
        ),
    };
    Ok(Effect {
        to: facts.status,
        ledger: LedgerEffect::None,
        book: Some(Booking::Duplicate {
            object: object.to_string(),
            booking,
        }),
        fresh_attempts: false,
        run_now: false,
        summary,
    })
}

fn resolve_dispute(facts: &PayoutFacts, outcome: DisputeOutcome) -> Result<Effect, Refusal> {
    if facts.status != PayoutStatus::NeedsOperator || !facts.disputed {
        return Err(Refusal::WrongState {
            action: "resolve_dispute",
            status: facts.status,
            hint: "only a payout its provider reported disputed, waiting for an operator",
        });
    }
    let mut book = None;
    let (to, ledger, summary) = match outcome {
        DisputeOutcome::Kept => (
            PayoutStatus::Paid,
            LedgerEffect::PostHold,
            "dispute resolved: the payee kept the money".to_string(),
        ),
        DisputeOutcome::Returned => (
            PayoutStatus::Returned,
            LedgerEffect::Reverse,
            "dispute resolved: all of it came back and is credited to the payee".to_string(),
        ),
        DisputeOutcome::PartReturned { amount } => {
            let total = facts.amount;
            let part = Money::new(amount, total.currency());
            let fits = part.is_positive() && amount < total.amount() && part.is_whole_minor();
            if !fits {
                return Err(Refusal::BadPart {
                    part: amount.to_string(),
                    payout: total.to_string(),
                });
            }
            book = Some(Booking::PartReturned(part));
            (
                PayoutStatus::Paid,
                LedgerEffect::PostHold,
                format!(
                    "dispute resolved: {part} of {total} came back and is credited to the payee; the rest was kept"
                ),
            )
        }
    };
    Ok(Effect {
        to,
        ledger,
        book,
        fresh_attempts: false,
        run_now: false,
        summary,
    })
}

/// States from which nothing is on its way to the provider once every attempt is settled.
const CANCEL_FROM: &[PayoutStatus] = &[PayoutStatus::Queued, PayoutStatus::NeedsOperator];

fn retry(facts: &PayoutFacts) -> Result<Effect, Refusal> {
    if facts.status != PayoutStatus::NeedsOperator {
        return Err(Refusal::WrongState {
            action: "retry",
            status: facts.status,
            hint: "only a payout waiting for an operator is retried; the worker retries the others by itself",
        });
    }
    if let Some(provider_ref) = &facts.provider_ref {
        return Err(Refusal::ProviderHolds {
            action: "retry",
            provider_ref: provider_ref.clone(),
        });
    }
    let (to, summary) = match unsettled(facts) {
        Some(a) => (
            PayoutStatus::OutcomeUnknown,
            format!(
                "retry by an operator: attempt {} may have landed, so the worker proves what it did before any new attempt",
                a.attempt
            ),
        ),
        None => (
            PayoutStatus::RetryScheduled,
            "retry by an operator: no attempt can have landed, so a new one is sent".to_string(),
        ),
    };
    Ok(Effect {
        to,
        ledger: LedgerEffect::None,
        book: None,
        fresh_attempts: true,
        run_now: true,
        summary,
    })
}

fn release(facts: &PayoutFacts) -> Result<Effect, Refusal> {
    if facts.status != PayoutStatus::Queued {
        return Err(Refusal::WrongState {
            action: "release_hold",
            status: facts.status,
            hint: "only a queued payout can be held",
        });
    }
    if facts.held_until.is_none() {
        return Err(Refusal::NotHeld);
    }
    Ok(Effect {
        to: PayoutStatus::Queued,
        ledger: LedgerEffect::None,
        book: None,
        fresh_attempts: false,
        run_now: true,
        summary: "cooling-off hold released early by an operator; the payout is sent now".into(),
    })
}

/// Refuses unless the payout is in `from` and no attempt of it can still land.
fn nothing_can_land(
    action: &'static str,
    facts: &PayoutFacts,
    from: &[PayoutStatus],
) -> Result<(), Refusal> {
    if !from.contains(&facts.status) {
        return Err(Refusal::WrongState {
            action,
            status: facts.status,
            hint: "only a queued payout or one waiting for an operator, with nothing on its way to the provider",
        });
    }
    if let Some(provider_ref) = &facts.provider_ref {
        return Err(Refusal::ProviderHolds {
            action,
            provider_ref: provider_ref.clone(),
        });
    }
    match unsettled(facts) {
        Some(a) => Err(Refusal::MayLand {
            action,
            attempt: a.attempt,
            outcome: a.outcome.map_or("unreadable", AttemptOutcome::code),
        }),
        None => Ok(()),
    }
}

/// The attempt that may have moved money, if any: the last one, when it landed, is unknown,
/// was cut off in flight, or cannot be read. Earlier attempts are settled: the worker begins
/// attempt n+1 only once attempts 1..=n are proven not to have landed (refused, rate limited,
/// or shown absent by a lookup; `domain::step::after_lookup`), and a landed one is never
/// followed by another. Refused, rate-limited and proven-interrupted attempts moved nothing.
fn unsettled(facts: &PayoutFacts) -> Option<&AttemptFact> {
    facts.attempts.last().filter(|a| {
        !matches!(
            a.outcome,
            Some(AttemptOutcome::Retry | AttemptOutcome::Throttled)
                | Some(AttemptOutcome::Permanent | AttemptOutcome::Interrupted)
        )
    })
}

#[path = "operator_records.rs"]
mod records;
pub use records::*;

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
