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

use serde_json::Value;
use tracing::{Instrument, info, info_span, warn};

use super::heartbeat::with_heartbeat;
use crate::domain::ids::PayoutId;
use crate::domain::payout::{PayoutStatus, RetryPolicy, attempt_key};
use crate::domain::step::{self, AfterLookup, AttemptOutcome, Polled, Step};
use crate::providers::ProviderError;
use crate::providers::rail::{Checkpoints, PayoutRail, RailFuture, Rails, Submission};
use crate::storage::payout_views::{Claim, Lease, PayoutView};
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
                let step = run_step(deps, &lease, &payout);
                with_heartbeat(deps.store.clone(), lease.clone(), deps.lease_ttl, step).await
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

async fn run_step(
    deps: &Arc<PayoutDeps>,
    lease: &Lease,
    payout: &PayoutView,
) -> StoreResult<StepOutcome> {
    let Some(rail) = deps.rails.get(payout.rail).cloned() else {
        return match step::rail_not_configured(payout.status, payout.rail) {
            Some(step) => record(deps, lease, payout.status, &step).await,
            None => {
                // Delivered already: a worker without this rail simply cannot watch it now.
                deps.store
                    .release(lease, deps.policy.poll_max, "rail-not-configured")
                    .await?;
                Ok(StepOutcome::Deferred)
            }
        };
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

/// `at` plus a lease's life: when a lease taken or renewed at `at` lapses.
fn lease_end(at: chrono::DateTime<chrono::Utc>, ttl: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Writes a step the domain decided, from the payout's status as claimed.
async fn record(
    deps: &PayoutDeps,
    lease: &Lease,
    from: PayoutStatus,
    step: &Step,
) -> StoreResult<StepOutcome> {
    deps.store.record_step(lease, from, step).await?;
    Ok(StepOutcome::Moved(step.to))
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
    let now = crate::clock::now();
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
        // The attempt's request left, if at all, before its sender's lease lapsed (a request
        // is never sent later: `providers::sending_until`).
        left_by: Some(lease_end(last.started_at, deps.lease_ttl)),
    };
    let checkpoints = StepCheckpoints {
        store: &deps.store,
        lease,
        attempt: last.attempt,
    };
    // A resolve may continue the uncertain attempt (Wise funds a transfer it finds unfunded):
    // prove the lease, renewed for its full life, before the rail calls out.
    let proven = crate::clock::now();
    deps.store.extend_lease(lease, deps.lease_ttl).await?;
    let found = crate::providers::sending_until(
        lease_end(proven, deps.lease_ttl),
        rail.resolve(&submission, earlier, last.started_at, &checkpoints),
    )
    .await
    .map_err(|e| e.to_string());
    let failures = deps.store.lookup_failures(&payout.id).await?;
    let jitter = crate::clock::unit_random();
    match step::after_lookup(&deps.policy, last.attempt, found, failures, jitter) {
        AfterLookup::SendNew(why) => Ok(Resolved::SendNew(why)),
        AfterLookup::Step(step) => {
            if step.observation.is_some() {
                info!(to = %step.to, "uncertain attempt resolved: it landed");
            }
            Ok(Resolved::Done(
                record(deps, lease, payout.status, &step).await?,
            ))
        }
    }
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
        return record(deps, lease, payout.status, &step::no_provider_ref()).await;
    };
    let read = rail.status(provider_ref).await.map_err(|e| {
        warn!(error = %e, failures = payout.lookup_failures + 1, "status poll failed");
        e.to_string()
    });
    let polled = Polled {
        status: payout.status,
        polls: payout.polls,
        lookup_failures: payout.lookup_failures,
        watch_left: payout
            .watch_until
            .filter(|_| payout.status == PayoutStatus::Paid)
            .map(|until| (until - crate::clock::now()).to_std().unwrap_or_default()),
        provider_status: payout.provider_status.as_deref(),
    };
    let step = step::after_poll(&deps.policy, polled, read);
    if step.to != payout.status {
        info!(to = %step.to, "payment settled at the provider");
    }
    record(deps, lease, payout.status, &step).await
}

async fn send_attempt(
    deps: &Arc<PayoutDeps>,
    rail: &dyn PayoutRail,
    lease: &Lease,
    payout: &PayoutView,
    context: Option<String>,
) -> StoreResult<StepOutcome> {
    // A paused rail sends nothing new; the payout waits and says why.
    if let Some(pause) = deps.store.rail_pause(payout.rail).await? {
        deps.store
            .wait_for_rail(lease, payout.status, &pause)
            .await?;
        return Ok(StepOutcome::Deferred);
    }
    let attempt = payout.attempts + 1;
    tracing::Span::current().record("attempt", attempt);
    // Rate-limited and cut-off sends are numbered like any other but do not count.
    let used = deps.store.attempts_used(&payout.id).await?;
    let last_error = payout.last_error.clone();
    if let Some(step) = step::attempts_exhausted(&deps.policy, used, context.as_deref(), last_error)
    {
        return record(deps, lease, payout.status, &step).await;
    }
    let key = attempt_key(&payout.id, attempt);
    let proven = crate::clock::now();
    let rail_ref = (crate::providers::facts(payout.rail).reference)(&payout.id, &key);
    deps.store
        .begin_attempt(
            lease,
            payout.status,
            attempt,
            &key,
            &rail_ref,
            context.as_deref(),
        )
        .await?;
    let submission = Submission {
        payout_id: &payout.id,
        attempt,
        destination: &payout.destination,
        amount: payout.amount,
        idempotency_key: &key,
        checkpoint: None,
        left_by: None,
    };
    let checkpoints = StepCheckpoints {
        store: &deps.store,
        lease,
        attempt,
    };
    // `begin_attempt` renewed the lease for its full life from no earlier than `proven`; no
    // request of this attempt leaves after that lease lapses.
    let decision = crate::providers::sending_until(
        lease_end(proven, deps.lease_ttl),
        rail.submit(&submission, &checkpoints),
    )
    .await;
    let step = step::after_send(
        &deps.policy,
        attempt,
        used,
        &decision,
        crate::clock::unit_random(),
    );
    info!(attempt, outcome = AttemptOutcome::of(&decision).code(), to = %step.to, "attempt finished");
    record(deps, lease, PayoutStatus::Submitting, &step).await
}
