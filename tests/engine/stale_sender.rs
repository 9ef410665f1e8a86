//! A worker paused past its lease (a stalled VM, a long collector pause) while its request had
//! not left yet. Another worker takes the payout over, settles the attempt and pays; the
//! paused worker then wakes up. Its request must never leave: the provider would pay twice.
//! Played on a simulated clock (`payouts::clock::Manual`), so the pause, the lease and the
//! settle delays pass without waiting.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::common;
use payouts::clock::Manual;
use payouts::domain::ids::Rail;
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::{PayoutDeps, StepOutcome, advance_payout};

#[tokio::test(flavor = "current_thread")]
async fn a_worker_paused_past_its_lease_never_sends_its_stale_request() {
    let start = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a valid instant");
    let (world, _installed) = Manual::install(start, 549);
    let (_db, store, sandbox) = common::all_rails_world("stale_sender").await;
    sandbox.hold_webhooks();
    let id = common::withdraw_payable(&store, "ref-nia", Rail::Partnerstack, "stale-1").await;
    let worker = |name: &str| {
        Arc::new(PayoutDeps {
            store: store.clone(),
            rails: sandbox.rails().expect("rails"),
            policy: RetryPolicy {
                settle_delay: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
            lease_ttl: Duration::from_secs(60),
            worker_id: name.into(),
        })
    };
    let (paused, successor) = (worker("paused"), worker("successor"));

    // The first worker claims the payout, records attempt 1 and stops just before sending:
    // crash points passed are the claim's commit (2) and the attempt's (2).
    world.arm_crash(4);
    let mut first = Box::pin(advance_payout(&paused, &id));
    let stopped = std::future::poll_fn(|cx| match first.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if world.struck().is_some() => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await;
    assert!(
        stopped.is_none(),
        "the first step ran to its end: {stopped:?}"
    );
    let (stop, at) = world.take_struck().expect("the crash struck");
    assert_eq!(at, "before a provider request");

    // Its lease lapses; the successor settles attempt 1 (nothing arrived) and pays.
    world.advance(Duration::from_secs(61));
    let mut status = PayoutStatus::Submitting;
    for _ in 0..50 {
        advance_payout(&successor, &id).await.expect("a step");
        status = store
            .payout(id.as_str())
            .await
            .expect("payout")
            .payout
            .status;
        if matches!(status, PayoutStatus::Processing | PayoutStatus::Paid) {
            break;
        }
        let next = store
            .payout(id.as_str())
            .await
            .expect("payout")
            .payout
            .next_step_at;
        world.advance_to(
            next.unwrap_or(world.now()).max(world.now()) + chrono::Duration::seconds(1),
        );
    }
    assert!(
        matches!(status, PayoutStatus::Processing | PayoutStatus::Paid),
        "the successor never paid: {status}"
    );

    // The paused worker wakes up and finishes its step: fenced out, and nothing sent.
    world.release(stop);
    let woke = first.await.expect("the first step");
    assert_eq!(woke, StepOutcome::LeaseLost);
    let rewards: Vec<_> = sandbox
        .moved(Rail::Partnerstack)
        .into_iter()
        .filter(|m| m.payout_id == id.as_str())
        .collect();
    assert_eq!(rewards.len(), 1, "PartnerStack holds {rewards:#?}");
    sandbox.stop();
}
