//! The payout path under injected faults: every payout ends paid exactly once at the mock.

use std::time::Duration;

use crate::common::{DEMO, TestEnv, fast_policy, usd};
use payouts::domain::ids::PayoutId;
use payouts::domain::payout::{PayoutStatus, RetryPolicy, attempt_key};
use payouts::jobs::advance_payout;
use payouts::providers::rail::{NoCheckpoints, Submission};
use payouts::sim::stripe::Faults;
use payouts::storage::payout_views::Claim;

#[tokio::test]
async fn commit_then_drop_on_every_first_attempt_pays_exactly_once() {
    let env = TestEnv::new(Faults {
        drop_first_attempt: true,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let ids = env.withdraw_all().await;
    assert_eq!(ids.len(), 5);
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&ids).await;
    for id in &ids {
        let detail = env.store.payout(id).await.unwrap();
        assert!(
            detail
                .events
                .iter()
                .any(|e| e.source.as_deref() == Some("lookup") && e.to == "paid"),
            "payout {id} should have been confirmed by a lookup: {:#?}",
            detail.events
        );
        assert_eq!(
            detail.payout.attempts, 1,
            "the landed first attempt is never re-sent"
        );
    }
}

#[tokio::test]
async fn errors_rate_limits_latency_and_drops_together_still_pay_once() {
    let env = TestEnv::new(Faults {
        latency_ms: 20,
        error_rate: 0.3,
        rate_limit_rate: 0.3,
        drop_after_commit_rate: 0.3,
        drop_first_attempt: false,
        seed: 99,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let ids = env.withdraw_all().await;
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&ids).await;
    // Available balances now reflect the payouts: nothing left to pay but the residue.
    let alice = env.balance("ref-alice").await;
    let vast = &alice.programs[0];
    assert_eq!(vast.withdrawn, usd("36.68"));
    assert_eq!(vast.pending, usd("0"));
    assert_eq!(vast.available, usd("0.00625"));
}

#[tokio::test]
async fn two_workers_racing_on_the_same_payouts_pay_once() {
    let env = TestEnv::new(Faults {
        latency_ms: 50,
        drop_first_attempt: true,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let ids = env.withdraw_all().await;
    let a = env.deps_with("sk_test_mock", fast_policy(), "worker-a");
    let b = env.deps_with("sk_test_mock", fast_policy(), "worker-b");
    // Drive every payout from both workers at once, step after step, like duplicate jobs.
    for _ in 0..12 {
        let mut steps = Vec::new();
        for id in &ids {
            let id: PayoutId = id.parse().unwrap();
            for deps in [a.clone(), b.clone()] {
                let id = id.clone();
                steps.push(tokio::spawn(
                    async move { advance_payout(&deps, &id).await },
                ));
            }
        }
        for s in steps {
            s.await.unwrap().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Whatever is left (scheduled follow-ups) a real worker finishes.
    env.work_until_idle(a).await;
    env.assert_paid_exactly_once(&ids).await;
}

#[tokio::test]
async fn a_worker_that_dies_mid_send_is_recovered_by_lookup() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let outcome = env.withdraw("ref-gina", usd("45"), "gina-1").await.unwrap();
    let id = outcome.payout.id.clone();
    let crashed = env.deps_with("sk_test_mock", fast_policy(), "crashing");

    // The doomed worker claims with a short lease, persists attempt 1, sends it (it lands at
    // the provider), and dies before recording anything.
    let Claim::Acquired { lease, payout } = env
        .store
        .claim(&id, &crashed.worker_id, Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("claim failed");
    };
    let key = attempt_key(&id, 1);
    env.store
        .begin_attempt(&lease, payout.status, 1, &key, id.as_str(), None)
        .await
        .unwrap();
    let rail = crashed.rails.get(payout.rail).expect("stripe rail");
    let landed = rail
        .submit(
            &Submission {
                payout_id: &id,
                attempt: 1,
                destination: &payout.destination,
                amount: payout.amount,
                idempotency_key: &key,
                checkpoint: None,
                left_by: None,
            },
            &NoCheckpoints,
        )
        .await;
    assert!(matches!(
        landed,
        payouts::domain::payout::SendDecision::Landed { .. }
    ));

    // Another worker takes over once the lease expires: it must look up, not re-send.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    env.work_until_idle(env.deps()).await;
    env.assert_paid_exactly_once(&[id.to_string()]).await;
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(detail.payout.attempts, 1);
    assert_eq!(detail.attempts[0].outcome, "landed");

    // The dead worker's late write is fenced out.
    let late = env
        .store
        .record_step(
            &lease,
            PayoutStatus::Submitting,
            &payouts::domain::step::Step {
                to: PayoutStatus::Failed,
                ..payouts::domain::step::Step::to_operator(
                    payouts::domain::step::Source::Worker,
                    "late".into(),
                    None,
                )
            },
        )
        .await;
    assert!(matches!(
        late,
        Err(payouts::storage::StoreError::LeaseLost { .. })
    ));
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_payout_and_releases_the_hold() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let before = env.payable("ref-nia").await;
    let outcome = env.withdraw("ref-nia", before, "nia-1").await.unwrap();
    assert_eq!(env.payable("ref-nia").await, usd("0"));
    // A wrong API key: Stripe answers 401, which no retry can fix.
    let deps = env.deps_with("sk_test_wrong", fast_policy(), "bad-key");
    env.work_until_idle(deps).await;
    let detail = env.store.payout(outcome.payout.id.as_str()).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::Failed);
    assert!(
        detail
            .payout
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 401")
    );
    assert_eq!(env.mock.transfers().len(), 0);
    assert_eq!(env.payable("ref-nia").await, before, "the hold was voided");
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn exhausted_attempts_wait_for_an_operator_with_the_hold_kept() {
    // Every send reaches the provider and fails there (a 500; the lookup then finds nothing):
    // each one uses an attempt. (Rate limits would not: see payout_leases.)
    let env = TestEnv::new(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let outcome = env.withdraw("ref-mo", usd("7.50"), "mo-1").await.unwrap();
    let policy = RetryPolicy {
        max_attempts: 2,
        ..fast_policy()
    };
    env.work_until_idle(env.deps_with("sk_test_mock", policy, "w"))
        .await;
    let detail = env.store.payout(outcome.payout.id.as_str()).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::NeedsOperator);
    assert_eq!(detail.payout.attempts, 2);
    assert_eq!(env.mock.transfers().len(), 0);
    let mo = env.balance("ref-mo").await;
    assert_eq!(
        mo.programs[0].pending,
        usd("7.50"),
        "the hold stays until an operator decides"
    );
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_second_transfer_at_the_provider_is_flagged_critical() {
    let env = TestEnv::new(Faults {
        drop_first_attempt: true,
        ..Faults::default()
    })
    .await;
    env.ingest(DEMO).await;
    let outcome = env
        .withdraw("ref-oli", usd("20.87"), "oli-1")
        .await
        .unwrap();
    let id = outcome.payout.id.to_string();
    // Attempt 1 lands and its response is dropped; before the lookup, someone else's transfer
    // for the same payout appears at the provider.
    let deps = env.deps();
    advance_payout(&deps, &outcome.payout.id).await.unwrap();
    env.mock.inject_transfer(&id, "acct_1Oli", 2087, "usd");
    env.work_until_idle(deps).await;
    let detail = env.store.payout(&id).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::NeedsOperator);
    assert!(detail.payout.last_error.unwrap().starts_with("CRITICAL"));
}

#[tokio::test]
async fn a_renewed_lease_keeps_others_out_and_a_released_one_cannot_be_renewed() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = env
        .withdraw("ref-gina", usd("45"), "gina-lease")
        .await
        .unwrap()
        .payout
        .id;
    let Claim::Acquired { lease, .. } = env
        .store
        .claim(&id, "slow-worker", Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("claim failed");
    };
    // A long step renews its lease (at once, so no load can let the first one lapse first),
    // then runs past the original expiry: nobody else may take over. The sleep only ever
    // makes the original lease more expired, so a slow machine cannot change the outcome.
    env.store
        .extend_lease(&lease, Duration::from_secs(120))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        env.store
            .claim(&id, "other-worker", Duration::from_secs(1))
            .await
            .unwrap(),
        Claim::Busy { .. }
    ));
    // Once released, the old lease cannot be renewed.
    env.store
        .release(&lease, Duration::ZERO, "test")
        .await
        .unwrap();
    assert!(matches!(
        env.store.extend_lease(&lease, Duration::from_secs(5)).await,
        Err(payouts::storage::StoreError::LeaseLost { .. })
    ));
}
