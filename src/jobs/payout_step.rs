//! One step of a payout: claim it, then either look up an uncertain earlier attempt or send a
//! new one, and record the result with its follow-up job.
//!
//! The step is safe to run any number of times, concurrently or after a crash: the claim
//! fences out other workers, a payout whose last attempt may have left is looked up before
//! anything is sent, and a lookup waits out the settle delay so a request still executing at
//! the provider cannot be overtaken.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{Instrument, info, info_span, warn};

use crate::domain::ids::{PayoutId, Rail};
use crate::domain::payout::{
    LookupFinding, PayoutStatus, RetryPolicy, SendDecision, attempt_key, step_after_send,
};
use crate::providers::TransferRequest;
use crate::providers::stripe::StripeAdapter;
use crate::storage::payouts::{Claim, Lease, PayoutView, StepRecord};
use crate::storage::{Store, StoreError, StoreResult};

/// What a worker needs to advance payouts.
#[derive(Debug, Clone)]
pub struct PayoutDeps {
    pub store: Store,
    pub stripe: StripeAdapter,
    pub policy: RetryPolicy,
    /// How long a claim is exclusive. Longer than the HTTP timeout, so a live worker always
    /// finishes its request before anyone else may take the payout over.
    pub lease_ttl: Duration,
    /// Unique per process start (apalis notes §6.2).
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
                run_step(deps, &lease, &payout).await
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

async fn run_step(
    deps: &Arc<PayoutDeps>,
    lease: &Lease,
    payout: &PayoutView,
) -> StoreResult<StepOutcome> {
    if payout.rail != Rail::Stripe {
        let step = StepRecord::to_operator(
            format!("the {} rail is not available in this build", payout.rail),
            Some(format!("rail {} not available", payout.rail)),
        );
        deps.store.record_step(lease, payout.status, &step).await?;
        return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
    }
    let mut context = None;
    if payout.status.needs_lookup() {
        // Wait until a request of the last attempt can no longer be executing.
        if let Some(started) = deps.store.last_attempt_started(&payout.id).await? {
            let settle = chrono::Duration::from_std(deps.policy.settle_delay).unwrap_or_default();
            let ready = started + settle;
            let now = Utc::now();
            if now < ready {
                let wait = (ready - now).to_std().unwrap_or_default();
                deps.store.release(lease, wait, "settle").await?;
                return Ok(StepOutcome::Deferred);
            }
        }
        match deps.stripe.lookup(&payout.id).await {
            Ok(LookupFinding::Landed { provider_ref, .. }) => {
                let step = StepRecord {
                    to: PayoutStatus::Paid,
                    reason: format!(
                        "lookup found transfer {provider_ref} for this payout: attempt {} landed",
                        payout.attempts
                    ),
                    attempt: Some(payout.attempts),
                    attempt_outcome: Some(("landed", Some("confirmed by lookup".into()))),
                    provider_ref: Some(provider_ref),
                    last_error: None,
                    next_in: None,
                    lookup_failed: false,
                };
                deps.store.record_step(lease, payout.status, &step).await?;
                info!("paid (confirmed by lookup)");
                return Ok(StepOutcome::Moved(PayoutStatus::Paid));
            }
            Ok(LookupFinding::Duplicate { provider_refs }) => {
                let reason = format!(
                    "CRITICAL: the provider holds {} transfers for this one payout ({}); an operator must reverse the extra",
                    provider_refs.len(),
                    provider_refs.join(", ")
                );
                let step = StepRecord {
                    to: PayoutStatus::NeedsOperator,
                    last_error: Some(reason.clone()),
                    reason,
                    attempt: Some(payout.attempts),
                    attempt_outcome: Some(("landed", Some("duplicate transfers found".into()))),
                    provider_ref: provider_refs.first().cloned(),
                    next_in: None,
                    lookup_failed: false,
                };
                deps.store.record_step(lease, payout.status, &step).await?;
                return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
            }
            Ok(LookupFinding::Refused { reason } | LookupFinding::Unprovable { reason }) => {
                let step = StepRecord::to_operator(reason.clone(), Some(reason));
                deps.store.record_step(lease, payout.status, &step).await?;
                return Ok(StepOutcome::Moved(PayoutStatus::NeedsOperator));
            }
            Ok(LookupFinding::Absent) => {
                context = Some(format!(
                    "lookup proved attempt {} did not land",
                    payout.attempts
                ));
            }
            Err(e) => {
                let failures = deps.store.lookup_failures(&payout.id).await? + 1;
                let exhausted = failures >= deps.policy.max_lookup_failures;
                let delay = deps.policy.backoff(failures, rand::random::<f64>());
                let step = StepRecord {
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
                };
                deps.store.record_step(lease, payout.status, &step).await?;
                return Ok(StepOutcome::Moved(step.to));
            }
        }
    }
    send_attempt(deps, lease, payout, context).await
}

async fn send_attempt(
    deps: &Arc<PayoutDeps>,
    lease: &Lease,
    payout: &PayoutView,
    context: Option<String>,
) -> StoreResult<StepOutcome> {
    let attempt = payout.attempts + 1;
    tracing::Span::current().record("attempt", attempt);
    if attempt > deps.policy.max_attempts {
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
    let request = TransferRequest {
        payout_id: &payout.id,
        destination: &payout.destination,
        amount: payout.amount,
        idempotency_key: &key,
    };
    let decision = deps.stripe.send(&request).await;
    let next = step_after_send(&deps.policy, attempt, &decision, rand::random::<f64>());
    let (outcome, provider_ref, error) = match &decision {
        SendDecision::Landed { provider_ref, .. } => ("landed", Some(provider_ref.clone()), None),
        SendDecision::Retry { reason, .. } => ("retry", None, Some(reason.clone())),
        SendDecision::Unknown { reason } => ("unknown", None, Some(reason.clone())),
        SendDecision::Permanent { reason } => ("permanent", None, Some(reason.clone())),
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
    };
    deps.store
        .record_step(lease, PayoutStatus::Submitting, &step)
        .await?;
    Ok(StepOutcome::Moved(next.status))
}
