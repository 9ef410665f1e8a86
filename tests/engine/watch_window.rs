//! The watch of a paid payout for money coming back. Its polls back off up to hours apart, so
//! the last one before the watch ends could fall hours before its end, or be scheduled after
//! it and never run: money returned in that gap would stay "paid" with us. The last look
//! must happen at the watch's end. Played on a simulated clock, without webhooks.

use std::sync::Arc;
use std::time::Duration;

use crate::common;
use payouts::clock::Manual;
use payouts::domain::ids::{PayoutId, Rail};
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::{PayoutDeps, advance_payout};
use payouts::storage::Store;

async fn view(store: &Store, id: &PayoutId) -> payouts::storage::payout_views::PayoutView {
    store.payout(id.as_str()).await.expect("payout").payout
}

/// A simulated world where ref-gina withdraws through PayPal, no webhook ever arrives, and
/// paid payouts are watched for `watch_for`: the world, its database, store and mocks, the
/// payout and a worker.
struct Watched {
    world: std::rc::Rc<Manual>,
    _installed: payouts::clock::Installed,
    _db: common::TestDb,
    store: Store,
    sandbox: payouts::sim::sandbox::Sandbox,
    id: PayoutId,
    deps: Arc<PayoutDeps>,
}

async fn watched(name: &str, seed: u64, watch_for: Duration) -> Watched {
    let start = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a valid instant");
    let (world, installed) = Manual::install(start, seed);
    let (db, store, sandbox) = common::all_rails_world(name).await;
    sandbox.hold_webhooks();
    let id = common::withdraw_payable(&store, "ref-gina", Rail::Paypal, name).await;
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: sandbox.rails().expect("rails"),
        policy: RetryPolicy {
            watch_for,
            ..RetryPolicy::default()
        },
        lease_ttl: Duration::from_secs(60),
        worker_id: "watcher".into(),
    });
    Watched {
        world,
        _installed: installed,
        _db: db,
        store,
        sandbox,
        id,
        deps,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn money_returned_just_before_the_watch_ends_is_seen_by_the_last_look() {
    let Watched {
        world,
        _installed,
        _db,
        store,
        sandbox,
        id,
        deps,
    } = watched("watch-window", 7, Duration::from_secs(7 * 24 * 3600)).await;

    // Step the payout at each time it asks for, until the next look is the one at (or past)
    // the watch's end.
    let mut steps = 0;
    let last_look = loop {
        advance_payout(&deps, &id).await.expect("a step");
        steps += 1;
        assert!(steps < 1000, "the payout never reached its watch's end");
        let p = view(&store, &id).await;
        let next = p
            .next_step_at
            .expect("a paid payout under watch has a next look");
        if let Some(until) = p.watch_until {
            assert_eq!(p.status, PayoutStatus::Paid);
            if next >= until {
                break next;
            }
        }
        world.advance_to(next.max(world.now()));
    };

    // The money comes back an hour before the watch ends; no webhook says so.
    let until = view(&store, &id).await.watch_until.expect("watched");
    world.advance_to(until - chrono::Duration::hours(1));
    let batch = view(&store, &id).await.provider_ref.expect("a batch id");
    assert!(sandbox.paypal.advance(&batch, "REVERSED"));
    world.advance_to(last_look);
    advance_payout(&deps, &id).await.expect("the last look");
    let p = view(&store, &id).await;
    assert_eq!(p.status, PayoutStatus::Returned, "{p:#?}");
    assert_eq!(last_look, until, "the last look is at the watch's end");

    sandbox.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn the_watch_ends_after_its_last_look() {
    let Watched {
        world,
        _installed,
        _db,
        store,
        sandbox,
        id,
        deps,
    } = watched("watch-window-end", 8, Duration::from_secs(24 * 3600)).await;
    let mut looks_after_paid = 0;
    for _ in 0..1000 {
        advance_payout(&deps, &id).await.expect("a step");
        let p = view(&store, &id).await;
        if p.status == PayoutStatus::Paid {
            looks_after_paid += 1;
        }
        match p.next_step_at {
            Some(next) => world.advance_to(next.max(world.now())),
            None => break,
        }
    }
    let p = view(&store, &id).await;
    assert_eq!(p.status, PayoutStatus::Paid);
    assert_eq!(p.next_step_at, None, "the watch never ended: {p:#?}");
    assert_eq!(world.now(), p.watch_until.expect("watched"));
    assert!(looks_after_paid > 3, "only {looks_after_paid} looks");
    sandbox.stop();
}
