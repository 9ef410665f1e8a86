//! What one step of a payout decided (no I/O). A worker claims the payout, talks to its rail
//! once, and asks one of these functions what the answer means: [`after_send`],
//! [`after_lookup`], [`after_poll`], or an escalation ([`rail_not_configured`],
//! [`attempts_exhausted`], [`no_provider_ref`]). The [`Step`] it gets back is written whole in
//! one transaction (`Store::record_step`), which checks the move against the transition table.

use std::time::Duration;

use super::ids::Rail;
use super::payout::{LookupFinding, PayoutStatus, RetryPolicy, SendDecision, after_landing};
use super::tracking::{Observation, Tracked, track};

/// How a step learned what it records; kept on the payout's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The answer to a send.
    Submit,
    /// A lookup of an attempt whose outcome was unknown.
    Lookup,
    /// A status poll of a payment the provider holds.
    Poll,
    /// The worker's own judgement (no rail, attempts used up).
    Worker,
}

impl Source {
    pub fn code(self) -> &'static str {
        match self {
            Source::Submit => "submit",
            Source::Lookup => "lookup",
            Source::Poll => "poll",
            Source::Worker => "worker",
        }
    }
}

/// An attempt's outcome, as its row stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Written before the request leaves; a worker that finds it stopped mid-send.
    InFlight,
    Landed,
    Retry,
    /// Rate limited before execution.
    Throttled,
    Unknown,
    Permanent,
    /// Cut off before its answer was recorded (the worker stopped mid-send), and a lookup
    /// then proved it did not land.
    Interrupted,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::InFlight,
        AttemptOutcome::Landed,
        AttemptOutcome::Retry,
        AttemptOutcome::Throttled,
        AttemptOutcome::Unknown,
        AttemptOutcome::Permanent,
        AttemptOutcome::Interrupted,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AttemptOutcome::InFlight => "in_flight",
            AttemptOutcome::Landed => "landed",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Throttled => "throttled",
            AttemptOutcome::Unknown => "unknown",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::Interrupted => "interrupted",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.code() == code)
    }

    /// The outcome of a send's answer.
    pub fn of(decision: &SendDecision) -> Self {
        match decision {
            SendDecision::Landed { .. } => AttemptOutcome::Landed,
            SendDecision::Retry { .. } => AttemptOutcome::Retry,
            SendDecision::Throttled { .. } => AttemptOutcome::Throttled,
            SendDecision::Unknown { .. } => AttemptOutcome::Unknown,
            SendDecision::Permanent { .. } => AttemptOutcome::Permanent,
        }
    }

    /// Whether the attempt used up one of `max_attempts`. Only a send that may have reached
    /// the provider and failed there counts: a rate limit was refused before execution, and
    /// an interrupted send failed on our side, so neither says anything about the payment
    /// that an operator should look at.
    pub fn uses_an_attempt(self) -> bool {
        !matches!(
            self,
            AttemptOutcome::Throttled | AttemptOutcome::Interrupted | AttemptOutcome::InFlight
        )
    }
}

/// Whether a stored outcome used up an attempt; one we cannot read counts, to be safe.
pub fn stored_outcome_uses_an_attempt(code: &str) -> bool {
    AttemptOutcome::from_code(code).is_none_or(AttemptOutcome::uses_an_attempt)
}

/// An earlier attempt of a payout, as the store remembers it.
#[derive(Debug, Clone)]
pub struct PastAttempt {
    pub attempt: u32,
    pub idempotency_key: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub provider_ref: Option<String>,
    pub checkpoint: Option<serde_json::Value>,
}

/// The attempt a step settles, and what its row now says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub detail: Option<String>,
}

/// What a step does to the payout's counters of provider reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tally {
    /// The provider answered: both counters start again.
    #[default]
    Reset,
    /// A lookup or poll could not reach the provider: one more failure in a row.
    ReadFailed,
    /// A poll saw nothing new: one more poll, for its back-off; no event is written.
    QuietPoll,
}

/// Everything one step writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: PayoutStatus,
    pub reason: String,
    pub source: Source,
    /// When to run the next step; `None` for final and operator states.
    pub next_in: Option<Duration>,
    pub settled: Option<Settled>,
    pub provider_ref: Option<String>,
    pub last_error: Option<String>,
    /// The provider's state as observed in this step, if one was.
    pub observation: Option<Observation>,
    pub tally: Tally,
    /// On a move to paid: keep polling for money coming back this long.
    pub watch_for: Option<Duration>,
}

impl Step {
    /// Hands the payout to an operator: no follow-up job, the hold stays.
    pub fn to_operator(source: Source, reason: String, last_error: Option<String>) -> Self {
        Step {
            to: PayoutStatus::NeedsOperator,
            reason,
            source,
            next_in: None,
            settled: None,
            provider_ref: None,
            last_error,
            observation: None,
            tally: Tally::Reset,
            watch_for: None,
        }
    }

    /// A move with nothing else to record.
    fn plain(policy: &RetryPolicy, source: Source, to: PayoutStatus, reason: String) -> Self {
        Step {
            to,
            source,
            watch_for: watch(policy),
            ..Step::to_operator(source, reason, None)
        }
    }
}

fn watch(policy: &RetryPolicy) -> Option<Duration> {
    (!policy.watch_for.is_zero()).then_some(policy.watch_for)
}

/// After the answer to send attempt `attempt`; `used` counts the attempts that used up one
/// of `max_attempts` before this one.
pub fn after_send(
    policy: &RetryPolicy,
    attempt: u32,
    used: u32,
    decision: &SendDecision,
    jitter: f64,
) -> Step {
    let outcome = AttemptOutcome::of(decision);
    let used = used + u32::from(outcome.uses_an_attempt());
    let next = super::payout::step_after_send(policy, attempt, used, decision, jitter);
    let (provider_ref, error, observation) = match decision {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => (Some(provider_ref.clone()), None, Some(observation.clone())),
        SendDecision::Retry { reason, .. }
        | SendDecision::Throttled { reason, .. }
        | SendDecision::Unknown { reason }
        | SendDecision::Permanent { reason } => (None, Some(reason.clone()), None),
    };
    Step {
        next_in: next.delay,
        settled: Some(Settled {
            attempt,
            outcome,
            detail: error.clone(),
        }),
        provider_ref,
        last_error: error,
        observation,
        ..Step::plain(policy, Source::Submit, next.status, next.reason)
    }
}

/// What a lookup of uncertain attempt `n` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterLookup {
    /// Proven that nothing landed: a new attempt may be sent (the reason goes on its event).
    SendNew(String),
    Step(Step),
}

/// After a lookup of attempt `n`: what the rail found, or why it could not look
/// (`failures` counts the lookups in a row that failed before this one).
pub fn after_lookup(
    policy: &RetryPolicy,
    n: u32,
    found: Result<LookupFinding, String>,
    failures: u32,
    jitter: f64,
) -> AfterLookup {
    let lookup = |to, reason| Step::plain(policy, Source::Lookup, to, reason);
    let step = match found {
        Ok(LookupFinding::Absent) => {
            return AfterLookup::SendNew(format!(
                "the provider shows nothing for attempts 1..={n}: none landed"
            ));
        }
        Ok(LookupFinding::Landed {
            provider_ref,
            observation,
        }) => {
            let how = format!("attempt {n}, found on lookup");
            let next = after_landing(policy, &provider_ref, &observation, &how);
            Step {
                next_in: next.delay,
                settled: Some(settled(n, AttemptOutcome::Landed, "confirmed by lookup")),
                provider_ref: Some(provider_ref),
                observation: Some(observation),
                ..lookup(next.status, next.reason)
            }
        }
        Ok(LookupFinding::Refused { reason }) => Step {
            settled: Some(settled(n, AttemptOutcome::Permanent, &reason)),
            last_error: Some(reason.clone()),
            ..lookup(
                PayoutStatus::Failed,
                format!("attempt {n} re-sent under its own token and refused: {reason}"),
            )
        },
        Ok(LookupFinding::Unprovable { reason }) => Step::to_operator(
            Source::Lookup,
            format!("cannot prove what attempt {n} did: {reason}"),
            Some(reason),
        ),
        Ok(LookupFinding::Pending { reason, retry_in }) => Step {
            next_in: Some(retry_in.min(policy.poll_max).max(policy.settle_delay)),
            last_error: Some(reason.clone()),
            ..lookup(
                PayoutStatus::OutcomeUnknown,
                format!("attempt {n} not settled yet: {reason}"),
            )
        },
        Ok(LookupFinding::Duplicate { provider_refs }) => {
            let reason = format!(
                "CRITICAL: the provider holds {} payments for this one payout ({}); an operator must reverse the extra",
                provider_refs.len(),
                provider_refs.join(", ")
            );
            Step {
                settled: Some(settled(
                    n,
                    AttemptOutcome::Landed,
                    "duplicate payments found",
                )),
                provider_ref: provider_refs.first().cloned(),
                ..Step::to_operator(Source::Lookup, reason.clone(), Some(reason))
            }
        }
        Err(e) => lookup_failed(policy, failures + 1, &e, jitter),
    };
    AfterLookup::Step(step)
}

fn settled(attempt: u32, outcome: AttemptOutcome, detail: &str) -> Settled {
    Settled {
        attempt,
        outcome,
        detail: Some(detail.to_string()),
    }
}

/// A lookup that could not reach the provider: look again later, never re-send blind; after
/// `max_lookup_failures` in a row, an operator.
fn lookup_failed(policy: &RetryPolicy, failures: u32, e: &str, jitter: f64) -> Step {
    let exhausted = failures >= policy.max_lookup_failures;
    let (to, reason) = if exhausted {
        (
            PayoutStatus::NeedsOperator,
            format!("lookup failed {failures} times in a row ({e}); waiting for an operator"),
        )
    } else {
        (
            PayoutStatus::OutcomeUnknown,
            format!("lookup failed ({e}); will look again, never re-send blind"),
        )
    };
    Step {
        next_in: (!exhausted).then(|| policy.backoff(failures, jitter)),
        last_error: Some(e.to_string()),
        tally: Tally::ReadFailed,
        ..Step::plain(policy, Source::Lookup, to, reason)
    }
}

/// What a poll needs to know about the payout it polls.
#[derive(Debug, Clone, Copy)]
pub struct Polled<'a> {
    pub status: PayoutStatus,
    pub polls: u32,
    pub lookup_failures: u32,
    /// For a paid payout under watch for money coming back: how long until the watch ends
    /// (zero once it has). `None` when nothing is watched.
    pub watch_left: Option<Duration>,
    pub provider_status: Option<&'a str>,
}

/// After a status poll of a processing payout (or of a paid one under watch): the provider's
/// reading, or why it could not be read.
pub fn after_poll(
    policy: &RetryPolicy,
    payout: Polled<'_>,
    read: Result<Observation, String>,
) -> Step {
    let observation = match read {
        // A poll reads the current state: it is never stale, and its time (another clock
        // than the webhooks') is not kept for ordering.
        Ok(o) => Observation {
            occurred_at: None,
            ..o
        },
        Err(e) => return poll_failed(policy, payout, &e),
    };
    let (to, reason) = match track(payout.status, None, &observation) {
        Tracked::Move { to, reason, .. } => (to, reason),
        Tracked::Conflict { reason } => (PayoutStatus::NeedsOperator, reason),
        Tracked::Unchanged => (
            payout.status,
            format!("provider status {}", observation.describe()),
        ),
    };
    let still = to == payout.status;
    let next_in = match to {
        PayoutStatus::Processing => Some(policy.poll_delay(payout.polls + 1)),
        // Newly paid: start the watch. Already paid: keep watching until the window ends.
        PayoutStatus::Paid if !still => policy.watch_delay(0).map(|d| d.min(policy.watch_for)),
        PayoutStatus::Paid => next_watch_look(policy, payout.polls + 1, payout.watch_left),
        _ => None,
    };
    // A changed provider wording is worth an event even without a status change.
    let quiet = still && payout.provider_status == Some(observation.provider_status.as_str());
    Step {
        next_in,
        observation: Some(observation),
        tally: if quiet {
            Tally::QuietPoll
        } else {
            Tally::Reset
        },
        ..Step::plain(policy, Source::Poll, to, reason)
    }
}

/// The wait before the next look at a paid payout under watch: its backoff, but never past the
/// watch's end, so the last look is at the end itself (polls hours apart would otherwise
/// leave hours unwatched, or schedule a look no worker may claim). `None` once the watch has
/// ended: the look just made was the last.
fn next_watch_look(policy: &RetryPolicy, polls: u32, left: Option<Duration>) -> Option<Duration> {
    let left = left.filter(|left| !left.is_zero())?;
    policy.watch_delay(polls).map(|d| d.min(left))
}

fn poll_failed(policy: &RetryPolicy, payout: Polled<'_>, e: &str) -> Step {
    let failures = payout.lookup_failures + 1;
    let exhausted = failures >= policy.max_lookup_failures;
    let paid = payout.status == PayoutStatus::Paid;
    let (to, reason) = match (paid, exhausted) {
        // Delivered already: a failing watch never un-pays; it just stops, saying so.
        (true, true) => (
            PayoutStatus::Paid,
            format!(
                "watch poll failed {failures} times in a row ({e}); no longer watching for returns"
            ),
        ),
        (false, true) => (
            PayoutStatus::NeedsOperator,
            format!(
                "status poll failed {failures} times in a row ({e}); the provider holds the payment, an operator must check it"
            ),
        ),
        (_, false) => (
            payout.status,
            format!("status poll failed ({e}); will poll again"),
        ),
    };
    let next_in = match (paid, exhausted) {
        (_, true) => None,
        // The last look is owed even when the watch has just ended: try it again.
        (true, false) => match next_watch_look(policy, payout.polls, payout.watch_left) {
            None if payout.watch_left.is_some() => policy.watch_delay(payout.polls),
            next => next,
        },
        (false, false) => Some(policy.poll_delay(payout.polls)),
    };
    Step {
        next_in,
        last_error: Some(e.to_string()),
        tally: Tally::ReadFailed,
        ..Step::plain(policy, Source::Poll, to, reason)
    }
}

/// A payout on a rail this worker has no credentials for: a paid one is only watched, so it
/// waits (`None`); any other goes to an operator, who configures the rail and retries it.
pub fn rail_not_configured(status: PayoutStatus, rail: Rail) -> Option<Step> {
    (status != PayoutStatus::Paid).then(|| {
        Step::to_operator(
            Source::Worker,
            format!("the {rail} rail is not configured in this worker; configure it and retry"),
            Some(format!("rail {rail} not configured")),
        )
    })
}

/// Before a send: all `max_attempts` are used, so an operator decides; `None` to go ahead.
/// `context` says how the step got here (e.g. a lookup that proved the last one absent).
pub fn attempts_exhausted(
    policy: &RetryPolicy,
    used: u32,
    context: Option<&str>,
    last_error: Option<String>,
) -> Option<Step> {
    (used >= policy.max_attempts).then(|| {
        Step::to_operator(
            Source::Worker,
            format!(
                "{}all {} attempts are used; waiting for an operator",
                context.map(|c| format!("{c}; ")).unwrap_or_default(),
                policy.max_attempts
            ),
            last_error,
        )
    })
}

/// A payout the provider holds, with no reference to poll it by.
pub fn no_provider_ref() -> Step {
    Step::to_operator(
        Source::Worker,
        "processing without a provider reference; cannot poll".into(),
        None,
    )
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
