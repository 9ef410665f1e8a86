//! Operator actions through the store and the real worker: a retry after the fault is lifted
//! pays once; cancel and mark-paid only where nothing can land; release-hold sends a held
//! payout now; each is on the payout's record with who and why, and asking twice does once.

use std::sync::Arc;

use crate::common::{DEMO, TestEnv, fast_policy, usd};
use payouts::domain::ids::PayoutId;
use payouts::domain::operator::{Action, ActionRequest, Refusal};
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::PayoutDeps;
use payouts::providers::rail::Rails;
use payouts::sim::stripe::Faults;
use payouts::storage::StoreError;

fn ask(action: Action, reason: &str) -> ActionRequest {
    ActionRequest {
        action,
        reason: reason.into(),
        actor: "ops-ana".into(),
    }
}

async fn status(env: &TestEnv, id: &PayoutId) -> PayoutStatus {
    env.store.payout(id.as_str()).await.unwrap().payout.status
}

/// A payout the worker handed to an operator because its rail is not configured: nothing
/// was ever sent for it.
async fn stranded(env: &TestEnv, account: &str, amount: &str) -> PayoutId {
    let key = format!("{account}-{amount}");
    let outcome = env.withdraw(account, usd(amount), &key).await.unwrap();
    let deps = Arc::new(PayoutDeps {
        rails: Rails::default(),
        ..(*env.deps()).clone()
    });
    env.work_until_idle(deps).await;
    let id = outcome.payout.id;
    assert_eq!(status(env, &id).await, PayoutStatus::NeedsOperator);
    id
}

/// A payout whose every send answered 500 until `max_attempts` ran out: it waits for a
/// human, and its last attempt may have landed.
async fn exhausted(env: &TestEnv, amount: &str, key: &str, max_attempts: u32) -> PayoutId {
    env.mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let id = env
        .withdraw("ref-mo", usd(amount), key)
        .await
        .unwrap()
        .payout
        .id;
    let policy = RetryPolicy {
        max_attempts,
        ..fast_policy()
    };
    env.work_until_idle(env.deps_with("sk_test_mock", policy, "w"))
        .await;
    assert_eq!(status(env, &id).await, PayoutStatus::NeedsOperator);
    id
}

#[tokio::test]
async fn a_retry_after_the_fault_is_lifted_pays_exactly_once() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = exhausted(&env, "7.50", "mo-1", 2).await;

    env.mock.set_faults(Faults::default());
    let acted = env
        .store
        .operator_act(&id, &ask(Action::Retry, "Stripe outage over"))
        .await
        .unwrap();
    assert_eq!(acted.from, PayoutStatus::NeedsOperator);
    assert!(!acted.replayed);
    // The same budget of two attempts: a retry starts a fresh count.
    let policy = RetryPolicy {
        max_attempts: 2,
        ..fast_policy()
    };
    env.work_until_idle(env.deps_with("sk_test_mock", policy, "w2"))
        .await;
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::Paid);
    assert_eq!(env.mock.transfers().len(), 1, "paid exactly once");
    let line = detail
        .events
        .iter()
        .find(|e| e.source.as_deref() == Some("operator"))
        .expect("the operator's line");
    assert_eq!(line.worker.as_deref(), Some("ops-ana"));
    assert!(
        line.reason.contains("Stripe outage over"),
        "{}",
        line.reason
    );

    // Paid: nothing to retry, and the refusal says so.
    let again = env
        .store
        .operator_act(&id, &ask(Action::Retry, "again"))
        .await;
    assert!(matches!(
        again,
        Err(StoreError::Operator(Refusal::WrongState { .. }))
    ));
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn cancel_voids_the_hold_once_and_mark_paid_posts_it() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let before = env.payable("ref-mo").await;
    let id = stranded(&env, "ref-mo", "5.00").await;
    assert_eq!(
        env.payable("ref-mo").await,
        before.checked_sub(&usd("5.00")).unwrap()
    );

    let no_reason = env.store.operator_act(&id, &ask(Action::Cancel, " ")).await;
    assert!(matches!(
        no_reason,
        Err(StoreError::Operator(Refusal::NoReason))
    ));
    let cancel = ask(Action::Cancel, "payee closed the account");
    let first = env.store.operator_act(&id, &cancel).await.unwrap();
    assert_eq!(first.to, PayoutStatus::Failed);
    assert_eq!(env.payable("ref-mo").await, before, "the hold is voided");
    let second = env.store.operator_act(&id, &cancel).await.unwrap();
    assert!(second.replayed, "asked twice, done once");
    assert_eq!(second.action_id, first.action_id);
    assert_eq!(env.payable("ref-mo").await, before);

    let other = stranded(&env, "ref-mo", "2.00").await;
    let paid = Action::MarkPaid {
        reference: "wire-2026-12-02-001".into(),
    };
    let acted = env
        .store
        .operator_act(&other, &ask(paid, "paid by bank wire"))
        .await
        .unwrap();
    assert_eq!(acted.to, PayoutStatus::Paid);
    assert!(acted.summary.contains("wire-2026-12-02-001"));
    let mo = env.balance("ref-mo").await;
    assert_eq!(mo.programs[0].pending, usd("0"), "the hold is posted");
    assert_eq!(env.mock.transfers().len(), 0, "nothing went through a rail");
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn nothing_is_cancelled_while_a_send_may_land() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let id = exhausted(&env, "3.00", "mo-3", 1).await;
    // The last attempt answered 500: it may have landed, so neither cancel nor mark-paid.
    for action in [
        Action::Cancel,
        Action::MarkPaid {
            reference: "x".into(),
        },
    ] {
        let refused = env.store.operator_act(&id, &ask(action, "why")).await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Operator(Refusal::MayLand { attempt: 1, .. }))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(status(&env, &id).await, PayoutStatus::NeedsOperator);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn release_hold_sends_a_cooling_off_payout_now() {
    let mut env = TestEnv::new(Faults::default()).await;
    env.store = env.store.clone().with_safeguards(Default::default());
    env.ingest(DEMO).await;
    // A changed destination: new payouts through it wait out the cooling-off.
    env.ingest(
        r#"{"type":"payout_method","account":"ref-mo","rail":"stripe","destination":"acct_1MoNew"}"#,
    )
    .await;
    let id = env
        .withdraw("ref-mo", usd("4.00"), "mo-4")
        .await
        .unwrap()
        .payout
        .id;
    assert_eq!(env.store.held_payouts().await.unwrap(), 1);
    let refused = env
        .store
        .operator_act(&id, &ask(Action::Cancel, "wrong"))
        .await;
    assert!(refused.is_ok(), "a held payout can also be cancelled");
    let id = env
        .withdraw("ref-mo", usd("1.00"), "mo-5")
        .await
        .unwrap()
        .payout
        .id;
    env.store
        .operator_act(
            &id,
            &ask(Action::ReleaseHold, "payee confirmed the change by phone"),
        )
        .await
        .unwrap();
    assert_eq!(env.store.held_payouts().await.unwrap(), 0);
    env.work_until_idle(env.deps()).await;
    assert_eq!(status(&env, &id).await, PayoutStatus::Paid);
    assert_eq!(env.mock.transfers().len(), 1);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_paused_rail_sends_nothing_new_until_resumed() {
    use payouts::domain::ids::Rail;
    use payouts::jobs::advance_payout;

    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let refused = env.store.pause_rail(Rail::Stripe, "", "ops-ana").await;
    assert!(matches!(
        refused,
        Err(StoreError::Operator(Refusal::NoReason))
    ));
    let (pause, new) = env
        .store
        .pause_rail(Rail::Stripe, "Stripe incident INC-42", "ops-ana")
        .await
        .unwrap();
    assert!(new);
    let (_, again) = env
        .store
        .pause_rail(Rail::Stripe, "twice", "ops-bo")
        .await
        .unwrap();
    assert!(!again, "pausing a paused rail changes nothing");

    let id = env
        .withdraw("ref-mo", usd("6.00"), "mo-6")
        .await
        .unwrap()
        .payout
        .id;
    let deps = env.deps();
    advance_payout(&deps, &id).await.unwrap();
    advance_payout(&deps, &id).await.unwrap();
    let detail = env.store.payout(id.as_str()).await.unwrap();
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Queued,
        "waits, never fails"
    );
    assert_eq!(env.mock.transfers().len(), 0);
    let noted: Vec<_> = detail
        .events
        .iter()
        .filter(|e| e.reason == pause.note())
        .collect();
    assert_eq!(noted.len(), 1, "the wait is on the record once");
    assert_eq!(detail.status_reason.as_deref(), Some(pause.note().as_str()));

    let resumed = env
        .store
        .resume_rail(Rail::Stripe, "incident over", "ops-ana")
        .await
        .unwrap();
    assert_eq!(
        resumed.map(|p| p.reason),
        Some("Stripe incident INC-42".into())
    );
    assert!(env.store.rail_pauses().await.unwrap().is_empty());
    env.work_until_idle(env.deps()).await;
    assert_eq!(status(&env, &id).await, PayoutStatus::Paid);
    assert_eq!(env.mock.transfers().len(), 1);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn above_the_four_eyes_amount_a_second_operator_decides() {
    use payouts::domain::cooling_off::Safeguards;
    use payouts::domain::operator::ActionState;

    let mut env = TestEnv::new(Faults::default()).await;
    env.store = env.store.clone().with_safeguards(Safeguards {
        method_cooling_off: std::time::Duration::ZERO,
        four_eyes_above: Some(rust_decimal::Decimal::from(2)),
    });
    env.ingest(DEMO).await;
    let before = env.payable("ref-mo").await;
    let big = stranded(&env, "ref-mo", "3.00").await;
    let small = stranded(&env, "ref-mo", "1.00").await;

    // Below the amount: done at once.
    let done = env
        .store
        .operator_act(&small, &ask(Action::Cancel, "duplicate request"))
        .await
        .unwrap();
    assert_eq!(done.state, ActionState::Done);

    // Above it: recorded, nothing else changes, asking again finds the same request.
    let cancel = ask(Action::Cancel, "payee closed the account");
    let asked = env.store.operator_act(&big, &cancel).await.unwrap();
    assert_eq!(asked.state, ActionState::PendingApproval);
    assert_eq!(status(&env, &big).await, PayoutStatus::NeedsOperator);
    let again = env.store.operator_act(&big, &cancel).await.unwrap();
    assert!(again.replayed && again.action_id == asked.action_id);
    let pending = env.store.pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].amount, usd("3.00"));

    // The asker cannot approve their own request.
    let own = env.store.approve_action(&asked.action_id, "ops-ana").await;
    assert!(matches!(
        own,
        Err(StoreError::Operator(Refusal::SameOperator))
    ));
    let approved = env
        .store
        .approve_action(&asked.action_id, "ops-bo")
        .await
        .unwrap();
    assert_eq!(
        (approved.state, approved.to),
        (ActionState::Done, PayoutStatus::Failed)
    );
    assert!(approved.summary.contains("approved by ops-bo"));
    assert_eq!(env.payable("ref-mo").await, before, "both holds voided");
    let twice = env.store.approve_action(&asked.action_id, "ops-bo").await;
    assert!(matches!(
        twice,
        Err(StoreError::Operator(Refusal::NotPending { .. }))
    ));

    // A rejected request changes nothing on the payout.
    let third = stranded(&env, "ref-mo", "2.50").await;
    let paid = Action::MarkPaid {
        reference: "wire-9".into(),
    };
    let asked = env
        .store
        .operator_act(&third, &ask(paid, "paid by wire"))
        .await
        .unwrap();
    env.store
        .reject_action(&asked.action_id, "ops-bo", "no wire found")
        .await
        .unwrap();
    assert_eq!(status(&env, &third).await, PayoutStatus::NeedsOperator);
    assert!(env.store.pending_approvals().await.unwrap().is_empty());
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_bulk_action_previews_then_acts_on_every_match_alone() {
    use payouts::domain::operator::PayoutFilter;

    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let before = env.payable("ref-mo").await;
    let a = stranded(&env, "ref-mo", "1.00").await;
    let b = stranded(&env, "ref-mo", "2.00").await;
    // A paid payout the filter does not match.
    let paid = env
        .withdraw("ref-alice", usd("1.00"), "alice-bulk")
        .await
        .unwrap()
        .payout
        .id;
    env.work_until_idle(env.deps()).await;
    assert_eq!(status(&env, &paid).await, PayoutStatus::Paid);

    let cancel = ask(Action::Cancel, "rail retired; payees re-paid elsewhere");
    let everything = env
        .store
        .bulk_act(&PayoutFilter::default(), &cancel, true)
        .await;
    assert!(matches!(
        everything,
        Err(StoreError::Operator(Refusal::NoFilter))
    ));
    let filter = PayoutFilter {
        status: Some(PayoutStatus::NeedsOperator),
        ..PayoutFilter::default()
    };
    let preview = env.store.bulk_act(&filter, &cancel, true).await.unwrap();
    assert_eq!(preview.matched, 2);
    assert!(preview.results.iter().all(|r| r.acted.is_some()));
    assert_eq!(
        status(&env, &a).await,
        PayoutStatus::NeedsOperator,
        "dry run"
    );
    assert!(env.store.pending_approvals().await.unwrap().is_empty());

    let done = env.store.bulk_act(&filter, &cancel, false).await.unwrap();
    assert_eq!(done.matched, 2);
    for id in [&a, &b] {
        assert_eq!(status(&env, id).await, PayoutStatus::Failed);
    }
    assert_eq!(env.payable("ref-mo").await, before, "every hold voided");
    // Run again: nothing matches any more.
    let again = env.store.bulk_act(&filter, &cancel, false).await.unwrap();
    assert_eq!(again.matched, 0);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn a_dispute_is_booked_as_the_operator_says() {
    use payouts::domain::object_match::Reading;
    use payouts::domain::operator::DisputeOutcome;
    use payouts::domain::tracking::{Observation, RailState};

    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let before = env.payable("ref-mo").await;
    let mut disputed = Vec::new();
    for (amount, key) in [("1.00", "mo-d1"), ("1.50", "mo-d2"), ("2.00", "mo-d3")] {
        let id = env
            .withdraw("ref-mo", usd(amount), key)
            .await
            .unwrap()
            .payout
            .id;
        env.work_until_idle(env.deps()).await;
        let detail = env.store.payout(id.as_str()).await.unwrap();
        assert_eq!(detail.payout.status, PayoutStatus::Paid);
        // Stripe reports part of the transfer reversed: only an operator can say how it ends.
        let reading = Reading {
            provider_ref: detail.payout.provider_ref.as_deref(),
            our_token: None,
        };
        let partial = Observation::new(RailState::Disputed, "partially_reversed");
        env.store
            .apply_observation(&id, reading, &partial, "webhook", None)
            .await
            .unwrap();
        assert_eq!(status(&env, &id).await, PayoutStatus::NeedsOperator);
        disputed.push(id);
    }
    let resolve = |outcome| {
        ask(
            Action::ResolveDispute { outcome },
            "the provider's final word",
        )
    };
    // Not a disputed payout: refused.
    let plain = stranded(&env, "ref-mo", "1.00").await;
    assert!(matches!(
        env.store
            .operator_act(&plain, &resolve(DisputeOutcome::Kept))
            .await,
        Err(StoreError::Operator(Refusal::WrongState { .. }))
    ));

    let kept = env
        .store
        .operator_act(&disputed[0], &resolve(DisputeOutcome::Kept))
        .await
        .unwrap();
    assert_eq!(kept.to, PayoutStatus::Paid);
    let back = env
        .store
        .operator_act(&disputed[1], &resolve(DisputeOutcome::Returned))
        .await
        .unwrap();
    assert_eq!(back.to, PayoutStatus::Returned);
    // Part of it came back: more than nothing, less than all, in whole cents.
    let part = |amount: &str| DisputeOutcome::PartReturned {
        amount: amount.parse().unwrap(),
    };
    for bad in ["0", "2.00", "5", "1.555", "-1"] {
        let refused = env
            .store
            .operator_act(&disputed[2], &resolve(part(bad)))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Operator(Refusal::BadPart { .. }))),
            "{bad}: {refused:?}"
        );
    }
    let some = env
        .store
        .operator_act(&disputed[2], &resolve(part("0.50")))
        .await
        .unwrap();
    assert_eq!(some.to, PayoutStatus::Paid);
    assert!(
        some.summary.contains("0.50 USD of 2.00 USD"),
        "{}",
        some.summary
    );
    // 1.00 kept, 1.50 back on the balance, 0.50 of 2.00 back, 1.00 still held for the
    // stranded one.
    let expected = before
        .checked_sub(&usd("1.00"))
        .and_then(|m| m.checked_sub(&usd("1.00")))
        .and_then(|m| m.checked_sub(&usd("1.50")))
        .unwrap();
    assert_eq!(env.payable("ref-mo").await, expected);
    env.assert_ledger_sound().await;
}
