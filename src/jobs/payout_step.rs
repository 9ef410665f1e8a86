//! One step of a payout: claim it, then either settle an uncertain earlier attempt, send a new
//! one, or poll the provider for a payment it is still processing; record the result with its
//! follow-up job.
//!
//! The step is safe to run any number of times, concurrently or after a crash: the claim
//! fences out other workers, a payout whose last attempt may have left is resolved through its
//! rail before anything is sent, and resolving waits out the settle delay so a request still
//! executing at the provider cannot be overtaken.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tracing::{Instrument, info, info_span, warn};

use super::heartbeat::heartbeat;
use crate::domain::ids::PayoutId;
use crate::domain::payout::{
    LookupFinding, PayoutStatus, RetryPolicy, SendDecision, after_landing, attempt_key,
    outcome_code, step_after_send, uses_an_attempt,
};
use crate::domain::tracking::{Observation, Tracked, track};
use crate::providers::ProviderError;
use crate::providers::rail::{Checkpoints, PayoutRail, RailFuture, Rails, Submission};
use crate::storage::payouts::{Claim, Lease, PayoutView, StepRecord};
use crate::storage::{Store, StoreError, StoreResult};

/// What a worker needs to advance payouts.
#[derive(Debug, Clone)]
pub struct PayoutDeps {
    pub store: Store,
    pub rails: Rails,
    pub policy: RetryPolicy,
    /// How long a claim is exclusive. Longer than the HTTP timeout, so a live worker always
    /// finishes its request before anyone else may take the payout over.
    pub lease_ttl: Duration,
    /// Unique per process start (docs/apalis.md, "Workers").
    pub worker_id: String,
}

/// What one step did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Moved(PayoutStatus),
    NothingToDo(PayoutStatus),
    Deferred,
    LeaseLost,
}

/// Advances one payout by one step.
pub async fn advance_payout(deps: &Arc<PayoutDeps>, id: &PayoutId) -> StoreResult<StepOutcome> {
    let span = info_span!("payout", payout = %id, worker = %deps.worker_id, attempt = tracing::field::Empty, rail = tracing::field::Empty);
    let result = async {
        match deps
            .store
            .claim(id, &deps.worker_id, deps.lease_ttl)
            .await?
        {
            Claim::Settled(status) => Ok(StepOutcome::NothingToDo(status)),
            Claim::Busy { until } => {
                info!(%until, "payout is leased by another worker; checking again after its lease");
                deps.store
                    .schedule_check(id, until + chrono::Duration::seconds(1))
                    .await?;
                Ok(StepOutcome::Deferred)
            }
            Claim::NotDue { at } => {
                deps.store.schedule_check(id, at).await?;
                Ok(StepOutcome::Deferred)
            }
            Claim::Acquired { lease, payout } => {
                tracing::Span::current().record("rail", payout.rail.as_str());
                // A step may take several provider calls (Wise: up to eight); the lease is
                // renewed while it runs, so no one takes over a live step.
                let beat = heartbeat(Arc::clone(deps), lease.clone());
                let result = run_step(deps, &lease, &payout).await;
                beat.abort();
                result
            }
        }
    }
    .instrument(span)
    .await;
    match result {
        Err(StoreError::LeaseLost { .. }) => {
            warn!(payout = %id, "lease taken over mid-step; the new holder will look up what happened");
            Ok(StepOutcome::LeaseLost)
        }
        other => other,
    }
}

/// Saves a rail's in-attempt progress under the step's lease.
struct StepCheckpoints<'a> {
    store: &'a Store,
    lease: &'a Lease,
    attempt: u32,
}

impl Checkpoints for StepCheckpoints<'_> {
    fn save<'b>(&'b self, state: &'b Value) -> RailFuture<'b, Result<(), ProviderError>> {
        Box::pin(async move {
            self.store
                .save_checkpoint(self.lease, self.attempt, state)
                .await
                .map_err(|e| ProviderError::Checkpoint(e.to_string()))
        })
    }
}

/// How long a payout that becomes paid is still watched for money coming back.
fn watch(deps: &PayoutDeps) -> Option<Duration> {
    (!deps.policy.watch_for.is_zero()).then_some(deps.policy.watch_for)
}

async fn run_step(
    deps: &Arc<PayoutDeps>,
    lease: &Lease,
    payout: &PayoutView,
) -> StoreResult<StepOutcome> {
    let Some(rail) = deps.rails.get(payout.rail).cloned() else {
        if payout.status == PayoutStatus::Paid {
            // Delivered already: a worker without this rail simply cannot watch it now.
            deps.store
                .release(lease, deps.policy.poll_max, "rail-not-configured")
                .await?;
            return Ok(StepOutcome::Deferred);
        }
        let step = StepRecord::to_operator(
            format!(
                "the {} rail is not configured in this worker; configure it and retry",
                payout.rail
            ),
            Some(format!("rail {} not configured", payout.rail)),
        );
        deps.store.record_step(lease, payout.status, &step).await?;
        return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
    };
    if matches!(payout.status, PayoutStatus::Processing | PayoutStatus::Paid) {
        return poll(deps, rail.as_ref(), lease, payout).await;
    }
    let mut context = None;
    if payout.status.needs_lookup() {
        match resolve(deps, rail.as_ref(), lease, payout).await? {
            Resolved::Done(outcome) => return Ok(outcome),
            Resolved::SendNew(why) => context = Some(why),
        }
    }
    send_attempt(deps, rail.as_ref(), lease, payout, context).await
}

enum Resolved {
    Done(StepOutcome),
    /// Proven that nothing landed: a new attempt may be sent.
    SendNew(String),
}

/// Settles an attempt whose outcome is unknown, through the rail.
async fn resolve(
    deps: &Arc<PayoutDeps>,
    rail: &dyn PayoutRail,
    lease: &Lease,
    payout: &PayoutView,
) -> StoreResult<Resolved> {
    let attempts = deps.store.past_attempts(&payout.id).await?;
    let Some((last, earlier)) = attempts.split_last() else {
        // Submitting without an attempt row cannot happen (both are written together);
        // nothing can have left, so a first attempt is safe.
        return Ok(Resolved::SendNew("no attempt was recorded".into()));
    };
    // Wait until a request of the last attempt can no longer be executing.
    let settle = chrono::Duration::from_std(deps.policy.settle_delay).unwrap_or_default();
    let ready = last.started_at + settle;
    let now = Utc::now();
    if now < ready {
        let wait = (ready - now).to_std().unwrap_or_default();
        deps.store.release(lease, wait, "settle").await?;
        return Ok(Resolved::Done(StepOutcome::Deferred));
    }
    tracing::Span::current().record("attempt", last.attempt);
    let submission = Submission {
        payout_id: &payout.id,
        attempt: last.attempt,
        destination: &payout.destination,
        amount: payout.amount,
        idempotency_key: &last.idempotency_key,
        checkpoint: last.checkpoint.clone(),
    };
    let checkpoints = StepCheckpoints {
        store: &deps.store,
        lease,
        attempt: last.attempt,
    };
    // A resolve may continue the uncertain attempt (Wise funds a transfer it finds unfunded):
    // prove the lease, renewed for its full life, before the rail calls out.
    deps.store.extend_lease(lease, deps.lease_ttl).await?;
    let found = rail
        .resolve(&submission, earlier, last.started_at, &checkpoints)
        .await;
    let n = last.attempt;
    let step = match found {
        Ok(LookupFinding::Absent) => {
            return Ok(Resolved::SendNew(format!(
                "the provider shows nothing for attempts 1..={n}: none landed"
            )));
        }
        Ok(LookupFinding::Landed {
            provider_ref,
            observation,
        }) => {
            let next = after_landing(
                &deps.policy,
                &provider_ref,
                &observation,
                &format!("attempt {n}, found on lookup"),
            );
            let step = StepRecord {
                to: next.status,
                reason: next.reason,
                attempt: Some(n),
                attempt_outcome: Some(("landed", Some("confirmed by lookup".into()))),
                provider_ref: Some(provider_ref),
                last_error: None,
                next_in: next.delay,
                lookup_failed: false,
                source: "lookup",
                observation: Some(&observation),
                polled: false,
                watch_for: watch(deps),
            };
            deps.store.record_step(lease, payout.status, &step).await?;
            info!(to = %next.status, "uncertain attempt resolved: it landed");
            return Ok(Resolved::Done(StepOutcome::Moved(next.status)));
        }
        Ok(LookupFinding::Refused { reason }) => StepRecord {
            to: PayoutStatus::Failed,
            reason: format!("attempt {n} re-sent under its own token and refused: {reason}"),
            attempt: Some(n),
            attempt_outcome: Some(("permanent", Some(reason.clone()))),
            provider_ref: None,
            last_error: Some(reason),
            next_in: None,
            lookup_failed: false,
            source: "lookup",
            observation: None,
            polled: false,
            watch_for: watch(deps),
        },
        Ok(LookupFinding::Unprovable { reason }) => StepRecord {
            source: "lookup",
            ..StepRecord::to_operator(
                format!("cannot prove what attempt {n} did: {reason}"),
                Some(reason),
            )
        },
        Ok(LookupFinding::Pending { reason, retry_in }) => StepRecord {
            to: PayoutStatus::OutcomeUnknown,
            reason: format!("attempt {n} not settled yet: {reason}"),
            attempt: None,
            attempt_outcome: None,
            provider_ref: None,
            last_error: Some(reason),
            next_in: Some(
                retry_in
                    .min(deps.policy.poll_max)
                    .max(deps.policy.settle_delay),
            ),
            lookup_failed: false,
            source: "lookup",
            observation: None,
            polled: false,
            watch_for: watch(deps),
        },
        Ok(LookupFinding::Duplicate { provider_refs }) => {
            let reason = format!(
                "CRITICAL: the provider holds {} payments for this one payout ({}); an operator must reverse the extra",
                provider_refs.len(),
                provider_refs.join(", ")
            );
            StepRecord {
                attempt: Some(n),
                attempt_outcome: Some(("landed", Some("duplicate payments found".into()))),
                provider_ref: provider_refs.first().cloned(),
                source: "lookup",
                ..StepRecord::to_operator(reason.clone(), Some(reason))
            }
        }
        Err(e) => {
            let failures = deps.store.lookup_failures(&payout.id).await? + 1;
            let exhausted = failures >= deps.policy.max_lookup_failures;
            let delay = deps.policy.backoff(failures, rand::random::<f64>());
            StepRecord {
                to: if exhausted {
                    PayoutStatus::NeedsOperator
                } else {
                    PayoutStatus::OutcomeUnknown
                },
                reason: if exhausted {
                    format!(
                        "lookup failed {failures} times in a row ({e}); waiting for an operator"
                    )
                } else {
                    format!("lookup failed ({e}); will look again, never re-send blind")
                },
                attempt: None,
                attempt_outcome: None,
                provider_ref: None,
                last_error: Some(e.to_string()),
                next_in: (!exhausted).then_some(delay),
                lookup_failed: true,
                source: "lookup",
                observation: None,
                polled: false,
                watch_for: watch(deps),
            }
        }
    };
    deps.store.record_step(lease, payout.status, &step).await?;
    Ok(Resolved::Done(StepOutcome::Moved(step.to)))
}

/// Reads the state of a payment the provider is still processing (or, for a paid payout
/// under watch, whether the money came back) and moves the payout if it changed; otherwise
/// polls again later, backing off.
async fn poll(
    deps: &Arc<PayoutDeps>,
    rail: &dyn PayoutRail,
    lease: &Lease,
    payout: &PayoutView,
) -> StoreResult<StepOutcome> {
    let Some(provider_ref) = payout.provider_ref.as_deref() else {
        let step = StepRecord::to_operator(
            "processing without a provider reference; cannot poll".into(),
            None,
        );
        deps.store.record_step(lease, payout.status, &step).await?;
        return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
    };
    let observation = match rail.status(provider_ref).await {
        // A poll reads the current state: it is never stale, and its time (another clock
        // than the webhooks') is not kept for ordering.
        Ok(o) => Observation {
            occurred_at: None,
            ..o
        },
        Err(e) => {
            let failures = payout.lookup_failures + 1;
            let exhausted = failures >= deps.policy.max_lookup_failures;
            warn!(error = %e, failures, "status poll failed");
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
                (true, false) => deps.policy.watch_delay(payout.polls),
                (false, false) => Some(deps.policy.poll_delay(payout.polls)),
            };
            let step = StepRecord {
                to,
                reason,
                attempt: None,
                attempt_outcome: None,
                provider_ref: None,
                last_error: Some(e.to_string()),
                next_in,
                lookup_failed: true,
                source: "poll",
                observation: None,
                polled: false,
                watch_for: watch(deps),
            };
            deps.store.record_step(lease, payout.status, &step).await?;
            return Ok(StepOutcome::Moved(step.to));
        }
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
        PayoutStatus::Processing => Some(deps.policy.poll_delay(payout.polls + 1)),
        // Newly paid: start the watch. Already paid: keep watching until the window ends.
        PayoutStatus::Paid if !still => deps.policy.watch_delay(0),
        PayoutStatus::Paid => payout
            .watch_until
            .filter(|until| *until > Utc::now())
            .and_then(|_| deps.policy.watch_delay(payout.polls + 1)),
        _ => None,
    };
    let step = StepRecord {
        to,
        reason,
        attempt: None,
        attempt_outcome: None,
        provider_ref: None,
        last_error: None,
        next_in,
        lookup_failed: false,
        source: "poll",
        observation: Some(&observation),
        // A changed provider wording is worth an event even without a status change.
        polled: still && payout.provider_status.as_deref() == Some(&observation.provider_status),
        watch_for: watch(deps),
    };
    deps.store.record_step(lease, payout.status, &step).await?;
    if !still {
        info!(to = %to, provider_status = %observation.provider_status, "payment settled at the provider");
    }
    Ok(StepOutcome::Moved(to))
}

async fn send_attempt(
    deps: &Arc<PayoutDeps>,
    rail: &dyn PayoutRail,
    lease: &Lease,
    payout: &PayoutView,
    context: Option<String>,
) -> StoreResult<StepOutcome> {
    let attempt = payout.attempts + 1;
    tracing::Span::current().record("attempt", attempt);
    // Rate-limited and cut-off sends are numbered like any other but do not count.
    let used = deps.store.attempts_used(&payout.id).await?;
    if used >= deps.policy.max_attempts {
        let step = StepRecord::to_operator(
            format!(
                "{}all {} attempts are used; waiting for an operator",
                context.map(|c| format!("{c}; ")).unwrap_or_default(),
                deps.policy.max_attempts
            ),
            payout.last_error.clone(),
        );
        deps.store.record_step(lease, payout.status, &step).await?;
        return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
    }
    let key = attempt_key(&payout.id, attempt);
    deps.store
        .begin_attempt(lease, payout.status, attempt, &key, context.as_deref())
        .await?;
    let submission = Submission {
        payout_id: &payout.id,
        attempt,
        destination: &payout.destination,
        amount: payout.amount,
        idempotency_key: &key,
        checkpoint: None,
    };
    let checkpoints = StepCheckpoints {
        store: &deps.store,
        lease,
        attempt,
    };
    let decision = rail.submit(&submission, &checkpoints).await;
    let outcome = outcome_code(&decision);
    let used = used + u32::from(uses_an_attempt(outcome));
    let next = step_after_send(
        &deps.policy,
        attempt,
        used,
        &decision,
        rand::random::<f64>(),
    );
    let (provider_ref, error, observation) = match &decision {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => (Some(provider_ref.clone()), None, Some(observation)),
        SendDecision::Retry { reason, .. }
        | SendDecision::Throttled { reason, .. }
        | SendDecision::Unknown { reason }
        | SendDecision::Permanent { reason } => (None, Some(reason.clone()), None),
    };
    info!(attempt, outcome, to = %next.status, "attempt finished");
    let step = StepRecord {
        to: next.status,
        reason: next.reason,
        attempt: Some(attempt),
        attempt_outcome: Some((outcome, error.clone())),
        provider_ref,
        last_error: error,
        next_in: next.delay,
        lookup_failed: false,
        source: "submit",
        observation,
        polled: false,
        watch_for: watch(deps),
    };
    deps.store
        .record_step(lease, PayoutStatus::Submitting, &step)
        .await?;
    Ok(StepOutcome::Moved(next.status))
}
