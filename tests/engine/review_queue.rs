//! The review queue: each rule holds exactly the payout its signal names, and an operator's
//! approval sends it while a rejection voids its hold (and, asked to, claws the money back).
//! Figures by hand, Vast's terms: 3% of referred spend, 75% cashable, so 1,000.00 of spend
//! leaves 22.50 to withdraw.

use chrono::{DateTime, Utc};

use crate::common::{self, usd};
use payouts::clock::Manual;
use payouts::domain::ids::{AccountId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::operator::{Action, ActionRequest, Refusal};
use payouts::domain::payout::PayoutStatus;
use payouts::domain::payout_run::RunPeriod;
use payouts::domain::review::Rule;
use payouts::storage::payout_views::PayoutView;
use payouts::storage::{Store, StoreError};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

/// - ref-amy and ref-bob both pay out to acct_1Shared; each referred 1,000.00 of spend.
/// - ref-cat referred u-cat1 (1,000.00 of spend) and u-cat2, an account linked to it.
/// - ref-dan referred 5,000.00 of spend: 112.50 to withdraw.
/// - ref-eve referred 2,000.00 of spend of which 1,200.00 was refunded (60%): 18.00 left.
const WORLD: &str = r#"{"type":"account","id":"ref-amy","created_at":"2025-01-01T00:00:00Z","email":"amy@x.com"}
{"type":"account","id":"ref-bob","created_at":"2025-01-01T00:00:00Z","email":"bob@x.com"}
{"type":"account","id":"ref-cat","created_at":"2025-01-01T00:00:00Z","email":"cat@x.com"}
{"type":"account","id":"ref-dan","created_at":"2025-01-01T00:00:00Z","email":"dan@x.com"}
{"type":"account","id":"ref-eve","created_at":"2025-01-01T00:00:00Z","email":"eve@x.com"}
{"type":"account","id":"u-amy","created_at":"2026-03-01T00:00:00Z","email":"u-amy@x.com"}
{"type":"account","id":"u-bob","created_at":"2026-03-01T00:00:00Z","email":"u-bob@x.com"}
{"type":"account","id":"u-cat1","created_at":"2026-03-01T00:00:00Z","email":"u-cat1@x.com"}
{"type":"account","id":"u-cat2","created_at":"2026-03-01T00:00:00Z","email":"u-cat2@x.com"}
{"type":"account","id":"u-dan","created_at":"2026-03-01T00:00:00Z","email":"u-dan@x.com"}
{"type":"account","id":"u-eve1","created_at":"2026-03-01T00:00:00Z","email":"u-eve1@x.com"}
{"type":"account","id":"u-eve2","created_at":"2026-03-01T00:00:00Z","email":"u-eve2@x.com"}
{"type":"referral","program":"vast","referrer":"ref-amy","referred":"u-amy","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-bob","referred":"u-bob","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-cat","referred":"u-cat1","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-cat","referred":"u-cat2","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-dan","referred":"u-dan","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-eve","referred":"u-eve1","at":"2026-03-01T00:00:00Z"}
{"type":"referral","program":"vast","referrer":"ref-eve","referred":"u-eve2","at":"2026-03-01T00:00:00Z"}
{"type":"link","a":"ref-cat","b":"u-cat2","reason":"same device id"}
{"type":"usage","id":"amy-1","account":"u-amy","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"usage","id":"bob-1","account":"u-bob","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"usage","id":"cat-1","account":"u-cat1","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"usage","id":"dan-1","account":"u-dan","at":"2026-03-02T00:00:00Z","category":"instance","amount":"5000.00","currency":"USD"}
{"type":"usage","id":"eve-1","account":"u-eve1","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"usage","id":"eve-2","account":"u-eve2","at":"2026-03-02T00:00:00Z","category":"instance","amount":"1000.00","currency":"USD"}
{"type":"refund","id":"eve-r1","usage_id":"eve-2","amount":"1000.00","at":"2026-03-03T00:00:00Z"}
{"type":"refund","id":"eve-r2","usage_id":"eve-1","amount":"200.00","at":"2026-03-03T00:00:00Z"}
{"type":"payout_method","account":"ref-amy","rail":"stripe","destination":"acct_1Shared","auto_payout":true}
{"type":"payout_method","account":"ref-bob","rail":"stripe","destination":"acct_1Shared","auto_payout":true}
{"type":"payout_method","account":"ref-cat","rail":"stripe","destination":"acct_1Cat","auto_payout":true}
{"type":"payout_method","account":"ref-dan","rail":"stripe","destination":"acct_1Dan","auto_payout":true}
{"type":"payout_method","account":"ref-eve","rail":"stripe","destination":"acct_1Eve","auto_payout":true}"#;

async fn world(name: &str, rules: &str) -> (common::TestDb, Store) {
    let db = common::TestDb::named(name).await;
    let store = db
        .open(common::vast_with(&format!("[program.review]\n{rules}")))
        .await;
    common::ingest_text(&store, WORLD, true).await;
    (db, store)
}

async fn withdraw(store: &Store, who: &str, amount: Money, key: &str) -> PayoutView {
    common::withdraw_on(store, who, Rail::Stripe, amount, key).await
}

/// The open flags of a payout: (rule, evidence).
async fn open_flags(store: &Store, payout: &PayoutView) -> Vec<(Rule, String)> {
    let detail = store.payout(payout.id.as_str()).await.expect("payout");
    detail
        .flags
        .iter()
        .filter(|f| f.cleared_at.is_none())
        .map(|f| (f.rule, f.evidence.clone()))
        .collect()
}

fn act(action: Action, reason: &str) -> ActionRequest {
    ActionRequest {
        action,
        reason: reason.into(),
        actor: "ops-olga".into(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_destination_shared_with_another_account_holds_the_payout() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 41);
    let (_db, store) = world("review_shared", "shared_destination = true").await;
    let amy = withdraw(&store, "ref-amy", usd("22.50"), "amy-1").await;
    assert_eq!(amy.status, PayoutStatus::Held);
    assert_eq!(
        open_flags(&store, &amy).await,
        [(
            Rule::SharedDestination,
            "destination acct_1Shared is also the payout method of ref-bob".to_string()
        )]
    );
    // ref-dan's destination is its own: sent as before.
    let dan = withdraw(&store, "ref-dan", usd("112.50"), "dan-1").await;
    assert_eq!(dan.status, PayoutStatus::Queued);
    // The held payout keeps its hold: nothing of the 22.50 is available meanwhile.
    let balance = store
        .balance(&AccountId::parse("ref-amy").expect("id"))
        .await
        .expect("balance");
    let vast = balance.program("vast", Currency::Usd).expect("vast");
    assert_eq!((vast.pending, vast.available), (usd("22.50"), usd("0")));
    assert_eq!(balance.held_payouts.len(), 1);
    assert!(balance.held_payouts[0].reasons[0].starts_with("shared_destination: "));
    // The queue lists it with its evidence.
    let queue = store.review_queue(10).await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].payout.id, amy.id);
    assert_eq!(queue[0].flags[0].rule, Rule::SharedDestination);
}

#[tokio::test(flavor = "current_thread")]
async fn a_payee_linked_to_an_account_it_referred_is_held() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 42);
    let (_db, store) = world("review_linked", "linked_referred = true").await;
    let cat = withdraw(&store, "ref-cat", usd("22.50"), "cat-1").await;
    assert_eq!(
        open_flags(&store, &cat).await,
        [(
            Rule::LinkedReferred,
            "the payee is linked to referred u-cat2 (by link)".to_string()
        )]
    );
    let amy = withdraw(&store, "ref-amy", usd("22.50"), "amy-1").await;
    assert_eq!(amy.status, PayoutStatus::Queued);
}

#[tokio::test(flavor = "current_thread")]
async fn an_amount_above_the_threshold_is_held_and_one_at_it_is_not() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 43);
    let (_db, store) = world("review_above", r#"above = "100""#).await;
    let at_limit = withdraw(&store, "ref-dan", usd("100.00"), "dan-1").await;
    assert_eq!(at_limit.status, PayoutStatus::Queued);
    // 12.50 is left of ref-dan's 112.50: below. ref-dan's whole balance in a payout run
    // would be 112.50; here a withdrawal of 100.01 from a fresh world shows the boundary.
    let (_db2, store2) = world("review_above2", r#"above = "100""#).await;
    let above = withdraw(&store2, "ref-dan", usd("100.01"), "dan-1").await;
    assert_eq!(
        open_flags(&store2, &above).await,
        [(
            Rule::AboveThreshold,
            "100.01 USD is above the review threshold of 100 USD".to_string()
        )]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_destination_never_paid_before_is_held_above_the_smaller_threshold() {
    let (world_clock, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 44);
    let (_db, store) = world("review_new", r#"new_destination_above = "50""#).await;
    let sandbox = payouts::sim::sandbox::Sandbox::start(Default::default())
        .await
        .expect("sandbox");
    let deps = common::sandbox_worker(&store, &sandbox);
    // 50.00 is not above 50: sent, and paid, so acct_1Dan is now a destination paid before.
    let first = withdraw(&store, "ref-dan", usd("50.00"), "dan-1").await;
    assert_eq!(first.status, PayoutStatus::Queued);
    common::step_until_paid(&deps, &world_clock, &first.id).await;
    let second = withdraw(&store, "ref-dan", usd("62.50"), "dan-2").await;
    assert_eq!(second.status, PayoutStatus::Queued);
    // ref-amy's acct_1Shared was never paid: 22.50 is below 50, so only a bigger one is held.
    let (_db2, store2) = world("review_new2", r#"new_destination_above = "20""#).await;
    let amy = withdraw(&store2, "ref-amy", usd("22.50"), "amy-1").await;
    assert_eq!(
        open_flags(&store2, &amy).await,
        [(
            Rule::NewDestination,
            "destination acct_1Shared was never paid before and 22.50 USD is above 20 USD"
                .to_string()
        )]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn referred_spend_mostly_refunded_holds_the_payout() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 45);
    let (_db, store) = world("review_refunds", r#"refunded_share = "0.5""#).await;
    // (2,000.00 - 1,200.00) x 2.25% = 18.00 left to withdraw.
    let eve = withdraw(&store, "ref-eve", usd("18.00"), "eve-1").await;
    assert_eq!(
        open_flags(&store, &eve).await,
        [(
            Rule::MostlyRefunded,
            "1200.00 USD of the referred accounts' spend of 2000.00 USD was refunded, more than 50%"
                .to_string()
        )]
    );
    // ref-amy's referred spend was never refunded.
    let amy = withdraw(&store, "ref-amy", usd("22.50"), "amy-1").await;
    assert_eq!(amy.status, PayoutStatus::Queued);
}

#[tokio::test(flavor = "current_thread")]
async fn an_approved_payout_is_sent_and_a_rejected_one_voids_its_hold_or_claws_the_money_back() {
    let (world_clock, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 46);
    let (_db, store) = world("review_decide", "shared_destination = true").await;
    let sandbox = payouts::sim::sandbox::Sandbox::start(Default::default())
        .await
        .expect("sandbox");
    let deps = common::sandbox_worker(&store, &sandbox);
    // A payout run holds both payees of acct_1Shared and sends ref-dan's.
    let report = store
        .run_payouts(&RunPeriod::parse("2026-03-10").expect("period"), false)
        .await
        .expect("run");
    assert_eq!((report.created, report.held), (5, 2));
    let payouts = store.list_payouts(None).await.expect("list");
    let of = |who: &str| {
        payouts
            .iter()
            .find(|p| p.account.as_str() == who)
            .cloned()
            .expect("a payout")
    };
    let (amy, bob) = (of("ref-amy"), of("ref-bob"));
    assert_eq!(
        (amy.status, bob.status),
        (PayoutStatus::Held, PayoutStatus::Held)
    );
    assert_eq!(of("ref-dan").status, PayoutStatus::Queued);

    // A reason is required; a payout not held cannot be approved.
    let no_reason = store
        .operator_act(&amy.id, &act(Action::Approve, " "))
        .await;
    assert!(matches!(
        no_reason,
        Err(StoreError::Operator(Refusal::NoReason))
    ));
    let dan = of("ref-dan");
    let not_held = store
        .operator_act(&dan.id, &act(Action::Approve, "fine"))
        .await;
    assert!(matches!(
        not_held,
        Err(StoreError::Operator(Refusal::WrongState { .. }))
    ));

    // Approved: queued with its job, then paid.
    let acted = store
        .operator_act(
            &amy.id,
            &act(Action::Approve, "spouses sharing one account"),
        )
        .await
        .expect("approve");
    assert_eq!(
        (acted.from, acted.to),
        (PayoutStatus::Held, PayoutStatus::Queued)
    );
    common::step_until_paid(&deps, &world_clock, &amy.id).await;
    let detail = store.payout(amy.id.as_str()).await.expect("payout");
    let decided = &detail.flags[0];
    assert_eq!(
        (
            decided.decision.as_deref(),
            decided.cleared_by.as_deref(),
            decided.note.as_deref()
        ),
        (
            Some("approved"),
            Some("ops-olga"),
            Some("spouses sharing one account")
        )
    );
    assert!(detail.events.iter().any(|e| e.reason
        == "approved in review (shared_destination); the payout is sent by ops-olga: spouses sharing one account"));

    // Rejected with a clawback: the hold is voided and the 22.50 leaves ref-bob's balance.
    let acted = store
        .operator_act(
            &bob.id,
            &act(Action::Reject { clawback: true }, "alt account of ref-amy"),
        )
        .await
        .expect("reject");
    assert_eq!(acted.to, PayoutStatus::Failed);
    let bob_id = AccountId::parse("ref-bob").expect("id");
    let balance = store.balance(&bob_id).await.expect("balance");
    let vast = balance.program("vast", Currency::Usd).expect("vast");
    assert_eq!(
        (vast.cashable, vast.pending, vast.available),
        (usd("0"), usd("0"), usd("0"))
    );
    assert!(balance.held_payouts.is_empty());
    let check = store.check_ledger().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert!(store.review_queue(10).await.expect("queue").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_rejection_without_clawback_gives_the_amount_back_to_the_payee() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 47);
    let (_db, store) = world("review_reject", "shared_destination = true").await;
    let bob = withdraw(&store, "ref-bob", usd("22.50"), "bob-1").await;
    store
        .operator_act(
            &bob.id,
            &act(
                Action::Reject { clawback: false },
                "ask the payee for its own account",
            ),
        )
        .await
        .expect("reject");
    let balance = store
        .balance(&AccountId::parse("ref-bob").expect("id"))
        .await
        .expect("balance");
    let vast = balance.program("vast", Currency::Usd).expect("vast");
    assert_eq!((vast.pending, vast.available), (usd("0"), usd("22.50")));
    let detail = store.payout(bob.id.as_str()).await.expect("payout");
    assert_eq!(detail.payout.status, PayoutStatus::Failed);
    assert_eq!(detail.flags[0].decision.as_deref(), Some("rejected"));
}

#[tokio::test(flavor = "current_thread")]
async fn approval_does_not_end_a_cooling_off_hold() {
    use payouts::domain::cooling_off::Safeguards;
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 47);
    let (_db, store) = world("review_cooling", "shared_destination = true").await;
    let store = store.with_safeguards(Safeguards::default());
    // ref-dan replaces its destination by the one ref-amy and ref-bob share: both the
    // review (shared destination) and the 72 h cooling-off of a changed method hold it.
    let changed = r#"{"type":"payout_method","account":"ref-dan","rail":"stripe","destination":"acct_1Shared","auto_payout":true}"#;
    common::ingest_text(&store, changed, true).await;
    let dan = withdraw(&store, "ref-dan", usd("112.50"), "dan-1").await;
    assert_eq!(dan.status, PayoutStatus::Held);
    store
        .operator_act(&dan.id, &act(Action::Approve, "checked with the payee"))
        .await
        .expect("approve");
    let detail = store.payout(dan.id.as_str()).await.expect("payout");
    assert_eq!(detail.payout.status, PayoutStatus::Queued);
    assert_eq!(
        detail.payout.next_step_at,
        Some(at("2026-03-13T00:00:00Z")),
        "approving the review leaves the cooling-off in place"
    );
}

/// A rejection's clawback and a refund's clawback of the same commissions take them back
/// once, whichever comes first. Each referred 1,000.00 of spend earns 30.00: 22.50 cashable,
/// 7.50 credit; the refund of all of it claws both back.
#[tokio::test(flavor = "current_thread")]
async fn a_rejection_clawback_and_a_refund_never_take_the_same_commissions_twice() {
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 48);
    let (_db, store) = world("review_twice", "shared_destination = true").await;
    let reject = Action::Reject { clawback: true };
    let refund = |usage: &str| {
        format!(
            r#"{{"type":"refund","id":"{usage}-r","usage_id":"{usage}","amount":"1000.00","at":"2026-03-11T00:00:00Z"}}"#
        )
    };
    let vast = |who: &'static str| {
        let store = store.clone();
        async move {
            let id = AccountId::parse(who).expect("id");
            let balance = store.balance(&id).await.expect("balance");
            let vast = balance
                .program("vast", Currency::Usd)
                .expect("vast")
                .clone();
            (vast.cashable, vast.credit, vast.available)
        }
    };
    // ref-bob: rejected with clawback, then its referred spend refunded.
    let bob = withdraw(&store, "ref-bob", usd("22.50"), "bob-1").await;
    store
        .operator_act(&bob.id, &act(reject.clone(), "alt account"))
        .await
        .expect("reject");
    common::ingest_text(&store, &refund("bob-1"), true).await;
    assert_eq!(vast("ref-bob").await, (usd("0"), usd("0"), usd("0")));
    // ref-amy: its referred spend refunded while held, then rejected with clawback.
    let amy = withdraw(&store, "ref-amy", usd("22.50"), "amy-1").await;
    common::ingest_text(&store, &refund("amy-1"), true).await;
    store
        .operator_act(&amy.id, &act(reject, "alt account"))
        .await
        .expect("reject");
    assert_eq!(vast("ref-amy").await, (usd("0"), usd("0"), usd("0")));
    let check = store.check_ledger().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

#[tokio::test(flavor = "current_thread")]
async fn under_four_eyes_the_flag_names_the_approving_operator() {
    use payouts::domain::cooling_off::Safeguards;
    let (_world, _installed) = Manual::install(at("2026-03-10T00:00:00Z"), 49);
    let (_db, store) = world("review_four_eyes", "shared_destination = true").await;
    let store = store.with_safeguards(Safeguards {
        method_cooling_off: std::time::Duration::ZERO,
        four_eyes_above: Some("10".parse().expect("decimal")),
    });
    let amy = withdraw(&store, "ref-amy", usd("22.50"), "amy-1").await;
    let asked = store
        .operator_act(&amy.id, &act(Action::Approve, "spouses"))
        .await
        .expect("asked");
    assert_eq!(asked.to, PayoutStatus::Held, "waits for a second operator");
    store
        .approve_action(&asked.action_id, "ops-paul")
        .await
        .expect("approved");
    let detail = store.payout(amy.id.as_str()).await.expect("payout");
    assert_eq!(detail.payout.status, PayoutStatus::Queued);
    assert_eq!(detail.flags[0].cleared_by.as_deref(), Some("ops-paul"));
}
