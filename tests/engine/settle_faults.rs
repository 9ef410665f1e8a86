//! Uncertain attempts settled under the faults that fool a listing: requests that commit
//! after the client gave up (beyond the settle delay), listings that lag behind writes, and
//! 500s after commit. Many payouts; each is paid exactly once, or waits for an operator with
//! a reason, and no payout is ever paid twice.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, DEMO, TestEnv, eventually, fast_policy, usd};
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::payout::PayoutStatus;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::sim::kit::Faults;
use payouts::sim::sandbox::{Sandbox, SandboxOptions};
use payouts::storage::payout_views::WithdrawalRequest;

const RAILS_FIXTURE: &str = include_str!("../../fixtures/rails.ndjson");

/// Payouts per test: enough that every fault hits several of them.
const PAYOUTS: usize = 40;

/// Late commits land 2.5 s after the request, well beyond the 0.5 s settle delay of
/// `fast_policy`; listings show a write only 3 s after it.
fn lying_provider(seed: u64) -> Faults {
    Faults {
        late_commit_rate: 0.4,
        late_commit_ms: 2500,
        list_lag_ms: 3000,
        error_after_commit_rate: 0.2,
        drop_after_commit_rate: 0.1,
        error_rate: 0.1,
        seed,
        ..Faults::default()
    }
}

#[tokio::test]
async fn stripe_late_commits_and_lagging_lists_pay_each_payout_exactly_once() {
    let env = TestEnv::new(lying_provider(7)).await;
    env.ingest(DEMO).await;
    let mut ids = Vec::new();
    for i in 0..PAYOUTS {
        let outcome = env
            .withdraw("ref-alice", usd("0.25"), &format!("late-{i}"))
            .await
            .expect("withdraw");
        ids.push(outcome.payout.id.to_string());
    }
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&ids).await;
}

/// Past Stripe's idempotency window (the mock forgets keys after 100 ms), a listing that
/// shows nothing cannot prove a late request did not land: the payout goes to an operator
/// and no second key is ever sent.
#[tokio::test]
async fn stripe_past_the_window_an_unproven_absence_goes_to_an_operator() {
    let env = TestEnv::new(Faults {
        late_commit_rate: 1.0,
        late_commit_ms: 2500,
        list_lag_ms: 60_000,
        key_ttl_ms: 100,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-late")
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string();
    env.work_until_idle(env.deps()).await;
    // The late request lands in its own time; wait for it as an event, then count.
    assert!(
        eventually(20, || async { env.mock.transfers_for_group(&id) >= 1 }).await,
        "the late request never landed"
    );
    let detail = env.store.payout(&id).await.expect("payout");
    assert_eq!(
        detail.payout.status,
        PayoutStatus::NeedsOperator,
        "{:#?}",
        detail.events
    );
    assert_eq!(detail.payout.attempts, 1, "no second key was sent");
    assert!(
        detail
            .payout
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot prove")),
        "{:?}",
        detail.payout.last_error
    );
    assert_eq!(env.mock.transfers_for_group(&id), 1);
}

#[tokio::test]
async fn partnerstack_late_commits_and_lagging_lists_record_one_reward_per_payout() {
    let db = common::TestDb::named("settle").await;
    let store = db.open(common::all_rails_programs()).await;
    for text in [DEMO, RAILS_FIXTURE] {
        common::ingest_text(&store, text, true).await;
    }
    let sandbox = Sandbox::start(SandboxOptions {
        faults: lying_provider(11),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox");
    let mut ids = Vec::new();
    for i in 0..PAYOUTS {
        let outcome = store
            .create_withdrawal(&WithdrawalRequest {
                account: AccountId::parse("ref-nia").expect("id"),
                program: common::vast(),
                rail: Rail::Partnerstack,
                amount: usd("0.05"),
                idempotency_key: IdempotencyKey::parse(&format!("nia-{i}")).expect("key"),
            })
            .await
            .unwrap_or_else(|e| panic!("withdrawal {i}: {e}"));
        ids.push(outcome.payout.id.to_string());
    }
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: sandbox.rails().expect("rails"),
        policy: fast_policy(),
        lease_ttl: Duration::from_secs(10),
        worker_id: format!("settle-{}", ulid::Ulid::generate()),
    });
    run_worker(
        deps,
        WorkerOptions {
            concurrency: 4,
            until_idle: true,
            sweep_every: Duration::from_secs(1),
            sweep_grace: Duration::from_secs(2),
            schedule: None,
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(90)),
        |_| {},
    )
    .await
    .expect("worker");
    let rewards = sandbox.partnerstack.rewards();
    for id in &ids {
        let detail = store.payout(id).await.expect("payout");
        let ours: Vec<_> = rewards
            .iter()
            .filter(|r| r.metadata.get("payout_id") == Some(id))
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "payout {id} has {} rewards: {:#?}",
            ours.len(),
            detail.events
        );
        assert_eq!(
            detail.payout.status,
            PayoutStatus::Paid,
            "payout {id}: {:#?}",
            detail.events
        );
        assert_eq!(
            detail.payout.provider_ref.as_deref(),
            Some(ours[0].key.as_str())
        );
    }
    assert_eq!(rewards.len(), ids.len(), "no stray rewards");
    let check = store.check_ledger().await.expect("check");
    assert!(check.is_ok(), "{:#?}", check.problems);
}
