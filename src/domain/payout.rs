//! The payout state machine and retry policy (no I/O).
//!
//! The one rule that keeps money from leaving twice: a send whose outcome is unknown is never
//! repeated blind. The payout moves to `outcome_unknown` and its next step is a lookup at the
//! provider; only a lookup that proves nothing landed allows another send.

use std::time::Duration;

use super::ids::PayoutId;
use super::tracking::{Observation, RailState};

pub use super::status::PayoutStatus;

/// What one send attempt's response means, decided by the rail's error table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendDecision {
    /// The provider took the payment; `provider_ref` is its id for it and `observation` says
    /// whether it is delivered yet.
    Landed {
        provider_ref: String,
        observation: Observation,
    },
    /// Provably nothing moved (refused before execution); safe to send again later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Rate limited before execution: provably nothing moved, and the provider never took the
    /// payment up, so the attempt does not count toward `max_attempts`.
    Throttled {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The request may have executed; look it up before anything else.
    Unknown { reason: String },
    /// Refused for good; nothing moved.
    Permanent { reason: String },
}

/// What a lookup at the provider found for a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupFinding {
    /// Exactly one payment exists for this payout, in the state observed.
    Landed {
        provider_ref: String,
        observation: Observation,
    },
    /// None exists: every earlier attempt provably did not land.
    Absent,
    /// The uncertain attempt was re-sent under its own token (the provider deduplicates it)
    /// and refused for good: nothing moved.
    Refused { reason: String },
    /// Cannot be settled safely (e.g. the provider's dedupe window has passed and it offers no
    /// listing); an operator must check the provider's dashboard.
    Unprovable { reason: String },
    /// More than one transfer exists for one payout: money left twice. Critical.
    Duplicate { provider_refs: Vec<String> },
    /// Not settled yet: the attempt may still land (its request is still running, or a
    /// listing may lag). Look again under the same key after `retry_in`; never send anew.
    Pending { reason: String, retry_in: Duration },
}

/// Retry and lookup timing. Delays are whole seconds at least: the job queue stores run times
/// in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends allowed per payout before it waits for an operator.
    pub max_attempts: u32,
    /// Lookups allowed in a row that fail to reach the provider before an operator is asked.
    pub max_lookup_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Minimum wait before looking up an unknown outcome, so a request still executing at the
    /// provider has finished (at least the HTTP timeout).
    pub settle_delay: Duration,
    /// Upper bound on a provider's Retry-After we are willing to honour.
    pub max_retry_after: Duration,
    /// First wait before polling a payout the provider is still processing; doubles per poll.
    pub poll_base: Duration,
    /// Longest wait between two polls of one processing payout.
    pub poll_max: Duration,
    /// How long a paid payout is still polled for money coming back (returns, reversals,
    /// bounces), in case the webhook saying so is lost. Zero: not at all.
    pub watch_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_lookup_failures: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            settle_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(600),
            poll_base: Duration::from_secs(30),
            poll_max: Duration::from_secs(6 * 3600),
            watch_for: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, capped.
    /// `jitter` is a number in `[0, 1)` supplied by the caller so this stays pure.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The wait before the next poll of a processing payout already polled `polls` times.
    /// No jitter needed: polls of different payouts start at different times anyway.
    pub fn poll_delay(&self, polls: u32) -> Duration {
        self.poll_base
            .saturating_mul(1u32 << polls.min(20))
            .min(self.poll_max)
            .max(Duration::from_secs(1))
    }

    /// The wait before the next watch poll of a paid payout, if it is watched at all.
    pub fn watch_delay(&self, polls: u32) -> Option<Duration> {
        (!self.watch_for.is_zero()).then(|| self.poll_delay(polls))
    }

    /// The delay before the next step after `decision` on attempt number `attempt`.
    pub fn delay_after(&self, attempt: u32, decision: &SendDecision, jitter: f64) -> Duration {
        let base = self.backoff(attempt, jitter);
        match decision {
            SendDecision::Retry {
                retry_after: Some(after),
                ..
            }
            | SendDecision::Throttled {
                retry_after: Some(after),
                ..
            } => base.max((*after).min(self.max_retry_after)),
            SendDecision::Unknown { .. } => base.max(self.settle_delay),
            _ => base,
        }
    }
}

/// Where a payout goes after one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    pub status: PayoutStatus,
    pub delay: Option<Duration>,
    pub reason: String,
}

/// Pure transition after a send attempt. `used` counts the attempts that used up one of
/// `max_attempts` (see `step::AttemptOutcome::uses_an_attempt`), this one included if it does.
pub fn step_after_send(
    policy: &RetryPolicy,
    attempt: u32,
    used: u32,
    decision: &SendDecision,
    jitter: f64,
) -> NextStep {
    let delay = Some(policy.delay_after(attempt, decision, jitter));
    match decision {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => after_landing(
            policy,
            provider_ref,
            observation,
            &format!("attempt {attempt}"),
        ),
        SendDecision::Permanent { reason } => NextStep {
            status: PayoutStatus::Failed,
            delay: None,
            reason: format!("provider refused attempt {attempt}: {reason}"),
        },
        SendDecision::Unknown { reason } => NextStep {
            status: PayoutStatus::OutcomeUnknown,
            delay,
            reason: format!(
                "attempt {attempt} outcome unknown ({reason}); will look it up before any re-send"
            ),
        },
        SendDecision::Retry { reason, .. } if used >= policy.max_attempts => NextStep {
            status: PayoutStatus::NeedsOperator,
            delay: None,
            reason: format!(
                "attempt {attempt} failed ({reason}) and all {} attempts are used; waiting for an operator",
                policy.max_attempts
            ),
        },
        SendDecision::Throttled { reason, .. } => NextStep {
            status: PayoutStatus::RetryScheduled,
            delay,
            reason: format!(
                "attempt {attempt} was rate limited before execution ({reason}); retrying, it does not count toward the {} attempts",
                policy.max_attempts
            ),
        },
        SendDecision::Retry { reason, .. } => NextStep {
            status: PayoutStatus::RetryScheduled,
            delay,
            reason: format!("attempt {attempt} did not go through ({reason}); retrying"),
        },
    }
}

/// Where a payout goes once the provider holds its payment (`how` says how we learned it).
pub fn after_landing(
    policy: &RetryPolicy,
    provider_ref: &str,
    observation: &Observation,
    how: &str,
) -> NextStep {
    let seen = observation.describe();
    match observation.state {
        RailState::InFlight => NextStep {
            status: PayoutStatus::Processing,
            delay: Some(policy.poll_delay(0)),
            reason: format!(
                "provider accepted {provider_ref} ({how}); status {seen}, tracking until final"
            ),
        },
        RailState::Paid => NextStep {
            status: PayoutStatus::Paid,
            delay: policy.watch_delay(0),
            reason: format!("provider confirmed {provider_ref} ({how}); status {seen}"),
        },
        RailState::Failed => NextStep {
            status: PayoutStatus::Failed,
            delay: None,
            reason: format!("provider took {provider_ref} ({how}) but it failed: {seen}"),
        },
        RailState::Disputed => NextStep {
            status: PayoutStatus::NeedsOperator,
            delay: None,
            reason: format!(
                "provider took {provider_ref} ({how}) and reports {seen}, whose meaning for the money is unconfirmed; an operator must check"
            ),
        },
        RailState::Returned => NextStep {
            status: PayoutStatus::Returned,
            delay: None,
            reason: format!("provider shows {provider_ref} ({how}) already returned: {seen}"),
        },
    }
}

/// The provider idempotency key of one attempt. Deterministic, so a crashed worker and its
/// successor agree on it, and persisted before the request leaves.
pub fn attempt_key(payout: &PayoutId, attempt: u32) -> String {
    format!("{payout}-attempt-{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_outcomes_wait_at_least_the_settle_delay() {
        let p = RetryPolicy::default();
        let next = step_after_send(
            &p,
            1,
            1,
            &SendDecision::Unknown {
                reason: "reset".into(),
            },
            0.0,
        );
        assert_eq!(next.status, PayoutStatus::OutcomeUnknown);
        assert!(next.delay.unwrap() >= p.settle_delay);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::default();
        let d = SendDecision::Retry {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(45)),
        };
        assert!(p.delay_after(1, &d, 0.0) >= Duration::from_secs(45));
        let huge = SendDecision::Retry {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(100_000)),
        };
        assert!(p.delay_after(1, &huge, 0.0) <= p.max_retry_after.max(p.max_delay));
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        let d = SendDecision::Retry {
            reason: "500".into(),
            retry_after: None,
        };
        assert_eq!(
            step_after_send(&p, 1, 1, &d, 0.5).status,
            PayoutStatus::RetryScheduled
        );
        assert_eq!(
            step_after_send(&p, p.max_attempts, p.max_attempts, &d, 0.5).status,
            PayoutStatus::NeedsOperator
        );
        // Many attempts, few of which counted: not exhausted.
        assert_eq!(
            step_after_send(&p, p.max_attempts + 5, 1, &d, 0.5).status,
            PayoutStatus::RetryScheduled
        );
    }

    #[test]
    fn rate_limits_never_exhaust_attempts() {
        let p = RetryPolicy::default();
        let d = SendDecision::Throttled {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let next = step_after_send(&p, p.max_attempts * 3, p.max_attempts, &d, 0.5);
        assert_eq!(next.status, PayoutStatus::RetryScheduled);
        assert!(next.delay.unwrap() >= Duration::from_secs(3));
    }

    #[test]
    fn attempt_keys_are_deterministic_and_distinct() {
        let id = PayoutId::parse("po_1").unwrap();
        assert_eq!(attempt_key(&id, 1), attempt_key(&id, 1));
        assert_ne!(attempt_key(&id, 1), attempt_key(&id, 2));
    }

    proptest! {
        #[test]
        fn backoff_is_bounded_and_grows(attempt in 1u32..40, jitter in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.backoff(attempt, jitter);
            prop_assert!(d <= p.max_delay);
            prop_assert!(d >= p.backoff(attempt, 0.0));
            prop_assert!(p.backoff(attempt + 1, 0.0) >= p.backoff(attempt, 0.0));
        }
    }
}
