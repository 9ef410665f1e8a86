//! Leases, attempts and the job that must always exist: a step that cannot prove its lease
//! sends nothing, only attempts that may have reached the provider count toward the limit,
//! and every active payout always has a job that will run or is found by the sweep.

use std::time::Duration;

use crate::common::{DEMO, TestEnv, fast_policy, usd};
use payouts::domain::ids::PayoutId;
use payouts::domain::payout::{PayoutStatus, RetryPolicy, attempt_key};
use payouts::jobs::{StepOutcome, WorkerOptions, advance_payout, run_worker};
use payouts::sim::stripe::Faults;
use payouts::storage::payout_views::Claim;
use payouts::storage::{BackendKind, Store};

/// Runs `sql` (one payout id bound as `$1`) against the queue's table on either backend:
/// `{jobs}` stands for the table's name.
async fn on_jobs(store: &Store, sqlite: &'static str, postgres: &'static str, id: &PayoutId) {
    let sql = match store.kind() {
        BackendKind::Sqlite => sqlite,
        BackendKind::Postgres => postgres,
    };
    payouts::on_backend!(store, s => sqlx::query(sql).bind(id.as_str()).execute(s.pool()).await.map(|_| ()))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every job of the payout is finished, as if its worker had run it and lost the step.
async fn finish_all_jobs(store: &Store, id: &PayoutId) {
    on_jobs(
        store,
        "UPDATE Jobs SET status = 'Done' WHERE idempotency_key LIKE 'payout:' || $1 || ':%'",
        "UPDATE apalis.jobs SET status = 'Done' WHERE idempotency_key LIKE 'payout:' || $1 || ':%'",
        id,
    )
    .await;
}

/// Jobs of the payout that a worker will fetch: pending, or failed with attempts left.
async fn runnable_jobs(store: &Store, id: &PayoutId) -> i64 {
    let sql = match store.kind() {
        BackendKind::Sqlite => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM Jobs WHERE idempotency_key LIKE 'payout:' || $1 || ':%' \
             AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
        }
        BackendKind::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM apalis.jobs WHERE idempotency_key LIKE 'payout:' || $1 || ':%' \
             AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
        }
    };
    payouts::on_backend!(store, s => sqlx::query_scalar::<_, i64>(sql).bind(id.as_str()).fetch_one(s.pool()).await)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Makes the payout's next step a minute overdue.
async fn make_overdue(store: &Store, id: &PayoutId) {
    payouts::on_backend!(store, s => sqlx::query(
        "UPDATE payouts SET next_action_at = COALESCE(next_action_at, 0) - 60000 WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(s.pool())
    .await
    .map(|_| ()))
    .expect("overdue");
}

#[tokio::test]
async fn a_step_whose_lease_lapsed_sends_nothing_and_writes_nothing() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-lapsed")
        .await
        .unwrap()
        .payout
        .id;
    // A lease that lapses the moment it is taken: what a step holds once its heartbeat could
    // not renew it. Nobody else has taken the payout over, but the step cannot prove it holds
    // it, so it must not send.
    let mut deps = (*env.deps()).clone();
    deps.lease_ttl = Duration::ZERO;
    let outcome = advance_payout(&std::sync::Arc::new(deps), &id)
        .await
        .unwrap();
    assert_eq!(outcome, StepOutcome::LeaseLost);
    assert!(
        env.mock.transfers().is_empty(),
        "a step without a provable lease sent money"
    );
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::Queued);
    assert!(detail.attempts.is_empty(), "{:#?}", detail.attempts);
}

#[tokio::test]
async fn rate_limits_do_not_use_up_attempts() {
    // Four 429s (provably not executed) against a limit of two attempts, then success.
    let env = TestEnv::new(Faults {
        rate_limit_first: 4,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let outcome = env.withdraw("ref-mo", usd("7.50"), "mo-429").await.unwrap();
    let policy = RetryPolicy {
        max_attempts: 2,
        ..fast_policy()
    };
    env.work_until_idle(env.deps_with("sk_test_mock", policy, "w"))
        .await;
    let id = outcome.payout.id.to_string();
    let detail = env.store.payout(&id).await.unwrap();
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "{:#?}",
        detail.events
    );
    env.assert_paid_exactly_once(&[id]).await;
}

#[tokio::test]
async fn a_send_cut_off_by_a_crash_does_not_use_an_attempt() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-cut")
        .await
        .unwrap()
        .payout
        .id;
    // A worker persists attempt 1 and dies before its request leaves.
    let Claim::Acquired { lease, payout } = env
        .store
        .claim(&id, "doomed", Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("claim failed");
    };
    env.store
        .begin_attempt(
            &lease,
            payout.status,
            1,
            &attempt_key(&id, 1),
            id.as_str(),
            None,
        )
        .await
        .unwrap();
    // One attempt allowed: the cut-off one never reached the provider, so it is still free.
    let policy = RetryPolicy {
        max_attempts: 1,
        ..fast_policy()
    };
    env.work_until_idle(env.deps_with("sk_test_mock", policy, "w"))
        .await;
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "{:#?}",
        detail.events
    );
    env.assert_paid_exactly_once(&[id.to_string()]).await;
}

#[tokio::test]
async fn a_new_worker_sweeps_at_once_for_a_payout_whose_job_was_lost() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-orphan")
        .await
        .unwrap()
        .payout
        .id;
    // Its job was taken by a worker that died: it will never run again, and the payout's
    // step is a minute overdue.
    on_jobs(
        &env.store,
        "UPDATE Jobs SET status = 'Running', lock_by = NULL WHERE idempotency_key LIKE 'payout:' || $1 || ':%'",
        "UPDATE apalis.jobs SET status = 'Running', lock_by = NULL WHERE idempotency_key LIKE 'payout:' || $1 || ':%'",
        &id,
    )
    .await;
    make_overdue(&env.store, &id).await;
    // The periodic sweep is far beyond the test's deadline: only a sweep on start helps.
    run_worker(
        env.deps(),
        WorkerOptions {
            until_idle: true,
            sweep_every: Duration::from_secs(3600),
            sweep_grace: Duration::from_secs(2),
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(30)),
        |_| {},
    )
    .await
    .expect("worker");
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "the new worker did not pick the payout up: {:#?}",
        detail.events
    );
}

#[tokio::test]
async fn a_burnt_sweep_key_still_leaves_every_active_payout_a_runnable_job() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-burnt")
        .await
        .unwrap()
        .payout
        .id;
    finish_all_jobs(&env.store, &id).await;
    make_overdue(&env.store, &id).await;
    assert_eq!(runnable_jobs(&env.store, &id).await, 0);
    env.store
        .enqueue_overdue(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(runnable_jobs(&env.store, &id).await, 1);
    // The sweep's job runs out without moving the payout (its step was lost, or it failed
    // for good): the payout is exactly as overdue as before, under the same fence.
    finish_all_jobs(&env.store, &id).await;
    env.store
        .enqueue_overdue(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        runnable_jobs(&env.store, &id).await,
        1,
        "payout {id} is active with no runnable job after a sweep"
    );
    // And the job it has pays it.
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&[id.to_string()]).await;
}

/// A step whose move the transition table does not list (queued straight to paid, skipping
/// the send) is refused before anything is written: the payout, its hold and its history stay
/// as they were, and a real worker then pays it the normal way.
#[tokio::test]
async fn a_step_the_transition_table_refuses_changes_nothing() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-table")
        .await
        .unwrap()
        .payout
        .id;
    let before = env.store.payout(id.as_str()).await.unwrap();
    let Claim::Acquired { lease, payout } = env
        .store
        .claim(&id, "buggy", Duration::from_secs(30))
        .await
        .unwrap()
    else {
        panic!("claim failed");
    };
    assert_eq!(payout.status, PayoutStatus::Queued);
    let refused = env
        .store
        .record_step(
            &lease,
            payout.status,
            &payouts::domain::step::Step {
                to: PayoutStatus::Paid,
                provider_ref: Some("tr_invented".into()),
                ..payouts::domain::step::Step::to_operator(
                    payouts::domain::step::Source::Worker,
                    "a decision that skipped the send".into(),
                    None,
                )
            },
        )
        .await;
    match refused {
        Err(payouts::storage::StoreError::Transition(e)) => {
            assert_eq!((e.from, e.to), (PayoutStatus::Queued, PayoutStatus::Paid));
        }
        other => panic!("queued -> paid was not refused: {other:?}"),
    }
    let after = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(after.payout.status, PayoutStatus::Queued);
    assert_eq!(
        after.events.len(),
        before.events.len(),
        "no event was written"
    );
    env.assert_ledger_sound().await;
    // The lease runs out; a worker pays it through the table's own path.
    env.store
        .release(&lease, Duration::ZERO, "test")
        .await
        .unwrap();
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&[id.to_string()]).await;
}
