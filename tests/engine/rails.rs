//! All four rails over real HTTP on loopback: the worker, the webhook receivers and the four
//! mocks together. The promise under test: every payout reaches a final state that matches
//! the provider's own books, and per rail the money the mock moved equals what our ledger
//! says left, to the cent, whatever faults the mocks inject.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{DEMO, eventually, fast_policy, serve_webhooks};
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::sim::kit::Faults;
use payouts::sim::sandbox::{Sandbox, SandboxOptions};
use payouts::storage::Store;
use payouts::storage::payout_views::WithdrawalRequest;

const RAILS_FIXTURE: &str = include_str!("../../fixtures/rails.ndjson");

/// Who is paid through which rail in these tests.
const PLAN: [(&str, Rail); 5] = [
    ("ref-alice", Rail::Stripe),
    ("ref-gina", Rail::Paypal),
    ("ref-mo", Rail::Wise),
    ("ref-nia", Rail::Partnerstack),
    ("ref-oli", Rail::Wise),
];

struct Env {
    store: Store,
    sandbox: Sandbox,
    _db: common::TestDb,
}

impl Env {
    async fn new(options: SandboxOptions, webhooks: bool, extra: &str) -> Env {
        let db = common::TestDb::named("rails").await;
        let store = db.open(common::all_rails_programs()).await;
        for text in [DEMO, RAILS_FIXTURE, extra] {
            common::ingest_text(&store, text, true).await;
        }
        let sandbox = Sandbox::start(options).await.expect("sandbox");
        if webhooks {
            let url =
                serve_webhooks(sandbox.webhook_state(store.clone()).expect("webhook state")).await;
            sandbox.send_webhooks_to(Some(&url));
        }
        Env {
            store,
            sandbox,
            _db: db,
        }
    }

    fn deps(&self, policy: RetryPolicy) -> Arc<PayoutDeps> {
        Arc::new(PayoutDeps {
            store: self.store.clone(),
            rails: self.sandbox.rails().expect("rails"),
            policy,
            lease_ttl: Duration::from_secs(10),
            worker_id: format!("rails-test-{}", ulid::Ulid::generate()),
        })
    }

    async fn work(&self, policy: RetryPolicy) {
        run_worker(
            self.deps(policy),
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
    }

    async fn payable(&self, account: &str) -> Money {
        self.store
            .balance(&AccountId::parse(account).expect("id"))
            .await
            .expect("balance")
            .program("vast", Currency::Usd)
            .map(|p| p.payable_now)
            .unwrap_or(Money::zero(Currency::Usd))
    }

    async fn withdraw(&self, account: &str, rail: Rail) -> String {
        let amount = self.payable(account).await;
        self.store
            .create_withdrawal(&WithdrawalRequest {
                account: AccountId::parse(account).expect("id"),
                program: common::vast(),
                rail,
                amount,
                idempotency_key: IdempotencyKey::parse(&format!("t-{account}")).expect("key"),
            })
            .await
            .unwrap_or_else(|e| panic!("withdraw {account} via {rail}: {e}"))
            .payout
            .id
            .to_string()
    }

    async fn status(&self, id: &str) -> PayoutStatus {
        self.store.payout(id).await.expect("payout").payout.status
    }

    /// Every payout final and matching its mock; for the rails of these payouts, the mock's
    /// money equals the ledger's; the ledger sound.
    async fn assert_books_agree(&self, ids: &[String]) {
        let mut rails = Vec::new();
        for id in ids {
            let detail = self.store.payout(id).await.expect("payout");
            let p = &detail.payout;
            rails.push(p.rail);
            let (payments, delivered) = self.sandbox.payments_for(p.rail, id);
            let expected = match p.status {
                PayoutStatus::Paid => p.amount.to_minor_units().expect("minor"),
                PayoutStatus::Failed | PayoutStatus::Returned => 0,
                other => panic!(
                    "payout {id} via {} ended {other}: {:#?}",
                    p.rail, detail.events
                ),
            };
            assert_eq!(
                delivered, expected,
                "payout {id} via {} is {} but the mock delivered {delivered}",
                p.rail, p.status
            );
            assert!(
                payments <= 1,
                "payout {id} has {payments} payments at {}",
                p.rail
            );
        }
        let ledger = self.store.paid_out_by_rail().await.expect("totals");
        rails.sort();
        rails.dedup();
        for rail in rails {
            let at_mock = self.sandbox.delivered_total(rail);
            let ours: i64 = ledger
                .iter()
                .filter(|t| t.rail == rail)
                .map(|t| t.amount.to_minor_units().expect("whole cents"))
                .sum();
            assert_eq!(
                at_mock, ours,
                "{rail}: mock moved {at_mock}, ledger says {ours}"
            );
        }
        let check = self.store.check_ledger().await.expect("check");
        assert!(check.is_ok(), "{:#?}", check.problems);
    }
}

async fn withdraw_plan(env: &Env) -> Vec<String> {
    let mut ids = Vec::new();
    for (account, rail) in PLAN {
        ids.push(env.withdraw(account, rail).await);
    }
    ids
}

#[tokio::test]
async fn every_rail_pays_and_settles_with_webhooks() {
    let env = Env::new(SandboxOptions::default(), true, "").await;
    let ids = withdraw_plan(&env).await;
    env.work(fast_policy()).await;
    for id in &ids {
        assert_eq!(env.status(id).await, PayoutStatus::Paid, "{id}");
    }
    env.assert_books_agree(&ids).await;
    // The Wise payout to a EUR recipient recorded the quote's rate.
    let oli = env.store.payout(&ids[4]).await.expect("payout");
    assert!(
        oli.events.iter().any(|e| e.reason.contains("USD→EUR")),
        "{:#?}",
        oli.events
    );
}

#[tokio::test]
async fn polling_alone_settles_payouts_when_webhooks_are_lost() {
    // No webhook receiver at all: only the polling job can see PayPal and Wise finish, and
    // the scripted failures (unclaimed then returned; a recipient the bank rejects) end failed.
    let extra = r#"{"type":"payout_method","account":"ref-gina","rail":"paypal","destination":"unclaimed-gina@example.com"}
{"type":"payout_method","account":"ref-oli","rail":"wise","destination":"1005"}"#;
    let env = Env::new(SandboxOptions::default(), false, extra).await;
    let before_gina = env.payable("ref-gina").await;
    let ids = withdraw_plan(&env).await;
    env.work(fast_policy()).await;
    assert_eq!(env.status(&ids[1]).await, PayoutStatus::Failed);
    assert_eq!(env.status(&ids[4]).await, PayoutStatus::Failed);
    for i in [0, 2, 3] {
        assert_eq!(env.status(&ids[i]).await, PayoutStatus::Paid);
    }
    let gina = env.store.payout(&ids[1]).await.expect("payout");
    assert!(
        gina.events
            .iter()
            .any(|e| e.source.as_deref() == Some("poll")),
        "{:#?}",
        gina.events
    );
    // The unclaimed money is available again.
    assert_eq!(env.payable("ref-gina").await, before_gina);
    env.assert_books_agree(&ids).await;
}

#[tokio::test]
async fn late_failures_after_success_reverse_the_ledger_on_every_rail() {
    let extra = r#"{"type":"payout_method","account":"ref-alice","rail":"stripe","destination":"acct_bounceAlice"}
{"type":"payout_method","account":"ref-gina","rail":"paypal","destination":"reverse-gina@example.com"}
{"type":"payout_method","account":"ref-mo","rail":"wise","destination":"1004"}
{"type":"payout_method","account":"ref-nia","rail":"partnerstack","destination":"refund_pk_erin"}"#;
    // Late enough that delivery is always seen first, whichever of webhook or poll sees it.
    let options = SandboxOptions {
        late_after_ms: 3000,
        ..SandboxOptions::default()
    };
    let env = Env::new(options, true, extra).await;
    let before: Vec<Money> = {
        let mut v = Vec::new();
        for (account, _) in PLAN {
            v.push(env.payable(account).await);
        }
        v
    };
    let ids = withdraw_plan(&env).await;
    env.work(fast_policy()).await;
    let all_back = eventually(20, || async {
        let mut back = true;
        for id in &ids[..4] {
            back &= env.status(id).await == PayoutStatus::Returned;
        }
        back
    })
    .await;
    for id in &ids[..4] {
        let d = env.store.payout(id).await.expect("payout");
        assert!(
            all_back,
            "{id} via {} is {}: {:#?}",
            d.payout.rail, d.payout.status, d.events
        );
    }
    for (i, (account, _)) in PLAN.iter().enumerate().take(4) {
        assert_eq!(
            env.payable(account).await,
            before[i],
            "{account} got its money back"
        );
    }
    env.assert_books_agree(&ids).await;
}

#[tokio::test]
async fn an_expired_dedupe_window_never_pays_twice() {
    // Every first request commits and then loses its answer, and every mock forgets tokens
    // after 300 ms; we only look again after 1.5 s. Stripe, Wise and PartnerStack resolve by
    // listing and pay once; PayPal can only resolve by re-sending the same sender_batch_id,
    // which is no longer safe, so it stops for an operator, having paid once.
    let options = SandboxOptions {
        faults: Faults {
            drop_first_attempt: true,
            key_ttl_ms: 300,
            ..Faults::default()
        },
        ..SandboxOptions::default()
    };
    let env = Env::new(options, true, "").await;
    let ids = withdraw_plan(&env).await;
    let policy = RetryPolicy {
        settle_delay: Duration::from_millis(1500),
        ..fast_policy()
    };
    // The PayPal payout ends waiting for an operator, which a worker run "until idle"
    // treats as done.
    env.work(policy).await;
    let gina = env.store.payout(&ids[1]).await.expect("payout");
    assert_eq!(
        gina.payout.status,
        PayoutStatus::NeedsOperator,
        "{:#?}",
        gina.events
    );
    assert!(
        gina.payout
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("sender_batch_id")),
        "{:?}",
        gina.payout.last_error
    );
    assert_eq!(
        env.sandbox
            .moved(Rail::Paypal)
            .iter()
            .filter(|m| m.payout_id == ids[1])
            .count(),
        1,
        "PayPal holds exactly one payment"
    );
    for i in [0, 2, 3, 4] {
        assert_eq!(env.status(&ids[i]).await, PayoutStatus::Paid, "{}", ids[i]);
    }
    env.assert_books_agree(&[
        ids[0].clone(),
        ids[2].clone(),
        ids[3].clone(),
        ids[4].clone(),
    ])
    .await;
}

#[tokio::test]
async fn forged_webhooks_are_refused_on_every_rail() {
    let env = Env::new(SandboxOptions::default(), false, "").await;
    let url = serve_webhooks(env.sandbox.webhook_state(env.store.clone()).expect("state")).await;
    let http = reqwest::Client::new();
    let body = r#"{"id":"WH-1","event_type":"PAYMENT.PAYOUTS-ITEM.SUCCEEDED","resource":{}}"#;
    let now = chrono::Utc::now();
    let cases: [(&str, Vec<(&str, String)>); 4] = [
        (
            "stripe",
            vec![("stripe-signature", format!("t={},v1=00", now.timestamp()))],
        ),
        (
            "paypal",
            vec![
                ("paypal-transmission-id", "forged".into()),
                ("paypal-transmission-time", now.to_rfc3339()),
                ("paypal-transmission-sig", "Zm9yZ2Vk".into()),
                ("paypal-cert-url", "https://api.paypal.com/cert.pem".into()),
                ("paypal-auth-algo", "SHA256withRSA".into()),
            ],
        ),
        ("wise", vec![("x-signature-sha256", "Zm9yZ2Vk".into())]),
        ("partnerstack", vec![("x-webhook-token", "wrong".into())]),
    ];
    for (rail, headers) in cases {
        let mut request = http.post(format!("{url}/{rail}")).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let status = request.send().await.expect("send").status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{rail}: a forged delivery got {status}"
        );
    }
    let n: i64 = common::scalar(&env.store, "SELECT COUNT(*) FROM webhook_deliveries").await;
    assert_eq!(n, 0, "nothing about a forged delivery is recorded");
}

mod randomized {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Each case runs the whole system for a few seconds; a handful of schedules is enough
        // to mix every fault with every rail.
        #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

        /// Across randomized fault schedules, per rail, the mock's record of money moved
        /// equals the ledger's posted payouts, to the cent.
        #[test]
        fn mock_books_equal_the_ledger_under_random_faults(
            seed in any::<u64>(),
            error_rate in 0.0f64..0.3,
            rate_limit_rate in 0.0f64..0.3,
            drop_rate in 0.0f64..0.4,
            after_commit in 0.0f64..0.3,
            drop_first in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                let options = SandboxOptions {
                    faults: Faults {
                        seed,
                        error_rate,
                        rate_limit_rate,
                        drop_after_commit_rate: drop_rate,
                        error_after_commit_rate: after_commit,
                        drop_first_attempt: drop_first,
                        latency_ms: 5,
                        ..Faults::default()
                    },
                    ..SandboxOptions::default()
                };
                let env = Env::new(options, true, "").await;
                let ids = withdraw_plan(&env).await;
                env.work(RetryPolicy { max_attempts: 12, ..fast_policy() }).await;
                env.assert_books_agree(&ids).await;
            });
        }
    }
}

#[tokio::test]
async fn a_provider_contradicting_a_failure_freezes_the_money_for_an_operator() {
    // Wise cancels the transfer to recipient 1005 (failed; the hold is released), then says it
    // was sent after all. The money must not be withdrawable twice while an operator looks.
    let extra = r#"{"type":"payout_method","account":"ref-mo","rail":"wise","destination":"1005"}"#;
    let env = Env::new(SandboxOptions::default(), true, extra).await;
    let before = env.payable("ref-mo").await;
    let id = env.withdraw("ref-mo", Rail::Wise).await;
    env.work(fast_policy()).await;
    assert_eq!(env.status(&id).await, PayoutStatus::Failed);
    assert_eq!(
        env.payable("ref-mo").await,
        before,
        "released after the failure"
    );

    let transfer = env
        .store
        .payout(&id)
        .await
        .expect("payout")
        .payout
        .provider_ref
        .expect("transfer id");
    assert!(env.sandbox.wise.advance(&transfer, "outgoing_payment_sent"));
    let frozen = eventually(10, || async {
        env.status(&id).await == PayoutStatus::NeedsOperator
    })
    .await;
    let detail = env.store.payout(&id).await.expect("payout");
    assert!(frozen, "{:#?}", detail.events);
    assert!(
        detail
            .payout
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("CRITICAL")),
        "{:?}",
        detail.payout.last_error
    );
    assert!(
        !env.payable("ref-mo").await.is_positive(),
        "the contradicted amount is held again"
    );
    // The books still agree: the mock delivered it and the ledger says it left.
    let ledger: i64 = env
        .store
        .paid_out_by_rail()
        .await
        .expect("totals")
        .iter()
        .filter(|t| t.rail == Rail::Wise)
        .map(|t| t.amount.to_minor_units().expect("cents"))
        .sum();
    assert_eq!(ledger, env.sandbox.delivered_total(Rail::Wise));
    let check = env.store.check_ledger().await.expect("check");
    assert!(check.is_ok(), "{:#?}", check.problems);
}

#[tokio::test]
async fn a_watched_paid_payout_sees_money_come_back_without_webhooks() {
    // No webhooks at all. After delivery PayPal reverses one payout and Wise bounces another:
    // only the watch polls of paid payouts can notice, and they must reverse the ledger.
    let env = Env::new(SandboxOptions::default(), false, "").await;
    let before = (env.payable("ref-gina").await, env.payable("ref-mo").await);
    let ids = withdraw_plan(&env).await;
    let policy = RetryPolicy {
        watch_for: Duration::from_secs(60),
        ..fast_policy()
    };
    env.work(policy).await;
    let provider_ref = |i: usize| {
        let store = env.store.clone();
        let id = ids[i].clone();
        async move {
            let p = store.payout(&id).await.expect("payout").payout;
            assert_eq!(p.status, PayoutStatus::Paid, "{id}");
            p.provider_ref.expect("provider ref")
        }
    };
    assert!(
        env.sandbox
            .paypal
            .advance(&provider_ref(1).await, "REVERSED")
    );
    let transfer = provider_ref(2).await;
    assert!(env.sandbox.wise.advance(&transfer, "bounced_back"));
    assert!(env.sandbox.wise.advance(&transfer, "funds_refunded"));

    let deps = env.deps(policy);
    let watched = [ids[1].clone(), ids[2].clone()];
    let back = eventually(30, || async {
        let mut all = true;
        for id in &watched {
            let id = payouts::domain::ids::PayoutId::parse(id).expect("id");
            payouts::jobs::advance_payout(&deps, &id)
                .await
                .expect("step");
            all &= env.status(id.as_str()).await == PayoutStatus::Returned;
        }
        all
    })
    .await;
    for id in &watched {
        let d = env.store.payout(id).await.expect("payout");
        assert!(
            back,
            "{id} via {} is {}: {:#?}",
            d.payout.rail, d.payout.status, d.events
        );
        assert!(
            d.events
                .iter()
                .any(|e| e.to == "returned" && e.source.as_deref() == Some("poll")),
            "{:#?}",
            d.events
        );
    }
    assert_eq!(env.payable("ref-gina").await, before.0);
    assert_eq!(env.payable("ref-mo").await, before.1);
    env.assert_books_agree(&ids).await;
}

#[tokio::test]
async fn an_expired_partnerstack_reward_waits_for_an_operator_with_the_money_held() {
    // Whether an expired reward's money comes back to us is unconfirmed; crediting the
    // referrer could pay twice, so the payout stops for an operator and the amount stays out.
    let extra = r#"{"type":"payout_method","account":"ref-nia","rail":"partnerstack","destination":"expire_pk_carol"}"#;
    let options = SandboxOptions {
        late_after_ms: 1500,
        ..SandboxOptions::default()
    };
    let env = Env::new(options, true, extra).await;
    let id = env.withdraw("ref-nia", Rail::Partnerstack).await;
    env.work(fast_policy()).await;
    let stopped = eventually(15, || async {
        env.status(&id).await == PayoutStatus::NeedsOperator
    })
    .await;
    let detail = env.store.payout(&id).await.expect("payout");
    assert!(stopped, "{:#?}", detail.events);
    assert_eq!(detail.payout.provider_status.as_deref(), Some("expired"));
    assert!(!env.payable("ref-nia").await.is_positive());
    let check = env.store.check_ledger().await.expect("check");
    assert!(check.is_ok(), "{:#?}", check.problems);
}
