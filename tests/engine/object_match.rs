//! A provider reading about another object than the one a payout's state rests on never moves
//! the payout (issue 16, A1). Stripe names the payout in every transfer of its group, PayPal
//! echoes every attempt's sender_batch_id: such a reading about a duplicate is evidence,
//! recorded and raised, while the payout and the ledger stay as they are.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, *};
use chrono::Utc;
use payouts::domain::ids::{AccountId, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout::PayoutStatus;
use payouts::domain::reconcile::ExceptionKind;
use payouts::jobs::PayoutDeps;
use payouts::sim::sandbox::Sandbox;
use payouts::sim::stripe::Faults;
use payouts::storage::Store;
use payouts::storage::payout_views::PayoutDetail;

/// Events of `detail` from a webhook whose reason names `object`.
fn evidence_events(detail: &PayoutDetail, object: &str) -> usize {
    detail
        .events
        .iter()
        .filter(|e| e.source.as_deref() == Some("webhook") && e.reason.contains(object))
        .count()
}

/// Open duplicate evidence rows of a payout, straight from the table reconciliation reads.
async fn evidence_rows(store: &Store, payout: &str, object: &str) -> i64 {
    payouts::on_backend!(store, s => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM payout_duplicates WHERE payout_id = $1 AND object_ref = $2",
    )
    .bind(payout)
    .bind(object)
    .fetch_one(s.pool())
    .await)
    .expect("evidence rows")
}

#[tokio::test]
async fn reversing_a_duplicate_stripe_transfer_leaves_the_paid_payout_alone() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    env.serve_stripe_webhooks().await;
    let amount = env.payable("ref-mo").await;
    let payout = env
        .withdraw("ref-mo", amount, "dup-1")
        .await
        .expect("withdraw")
        .payout;
    let id = payout.id.to_string();
    // tr_1: a transfer in the payout's group that is not the one it is paid through (made
    // by hand, or by a tool that reused the group).
    let minor = payout.amount.to_minor_units().expect("minor");
    let stray = env
        .mock
        .inject_transfer(&id, &payout.destination, minor, "usd");
    // tr_2: the payout is sent and paid through its own transfer.
    env.work_until_idle(env.deps()).await;
    let paid = env.store.payout(&id).await.expect("payout");
    assert_eq!(paid.payout.status, PayoutStatus::Paid, "{:#?}", paid.events);
    let paying = paid.payout.provider_ref.clone().expect("provider ref");
    assert_ne!(paying, stray);
    let payable_when_paid = env.payable("ref-mo").await;

    // Finance reverses tr_1; Stripe tells us, naming our payout as its transfer_group.
    assert!(env.mock.reverse(&stray));
    let answered = eventually(15, || async {
        env.mock.outbox().deliveries().iter().any(|d| {
            d.answered == Some(200)
                && String::from_utf8_lossy(&d.body).contains("transfer.reversed")
        })
    })
    .await;
    assert!(answered, "the reversal webhook was not accepted");

    let detail = env.store.payout(&id).await.expect("payout");
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "a reversal of another transfer moved the payout: {:#?}",
        detail.events
    );
    assert_eq!(detail.payout.provider_ref.as_deref(), Some(paying.as_str()));
    assert_eq!(
        env.payable("ref-mo").await,
        payable_when_paid,
        "the payee was credited for a reversal of another transfer"
    );
    assert_eq!(
        evidence_events(&detail, &stray),
        1,
        "the duplicate is recorded once on the payout: {:#?}",
        detail.events
    );
    assert_eq!(evidence_rows(&env.store, &id, &stray).await, 1);
    // Raised to operators and reconciliation, not applied.
    let evidence = env
        .store
        .payout_duplicates(Some(&payout.id))
        .await
        .expect("evidence");
    assert_eq!(evidence.len(), 1, "{evidence:#?}");
    assert_eq!(evidence[0].object_ref, stray);
    assert_eq!(evidence[0].state, "returned");
    let exceptions = env.reconcile_today(vec![Rail::Stripe]).await;
    assert!(
        exceptions
            .iter()
            .any(|e| e.kind == ExceptionKind::DuplicateAtProvider
                && e.payout_id.as_deref() == Some(id.as_str())
                && e.records.contains(&stray)),
        "reconciliation should raise the duplicate: {exceptions:#?}"
    );
    env.assert_ledger_sound().await;
}

/// Runs a worker on the sandbox's rails in the background until nothing is active.
fn spawn_worker(store: &Store, sandbox: &Sandbox) -> tokio::task::JoinHandle<()> {
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: sandbox.rails().expect("rails"),
        policy: fast_policy(),
        lease_ttl: Duration::from_secs(10),
        worker_id: format!("object-match-{}", ulid::Ulid::generate()),
    });
    tokio::spawn(run_until_idle(deps, 2))
}

#[tokio::test]
async fn a_paypal_event_for_another_attempts_batch_leaves_the_payout_alone() {
    let (_db, store, sandbox) = common::all_rails_world("object_match").await;
    let url = serve_webhooks(sandbox.webhook_state(store.clone()).expect("state")).await;
    sandbox.send_webhooks_to(Some(&url));
    let account = AccountId::parse("ref-gina").expect("id");
    let id = common::withdraw_payable(&store, "ref-gina", Rail::Paypal, "dup-paypal")
        .await
        .to_string();
    // Attempt 1 is refused for want of funds (nothing moves), attempt 2 pays.
    let balance = sandbox.paypal.balance(Currency::Usd);
    sandbox.paypal.set_balance(Currency::Usd, 0);
    let worker = spawn_worker(&store, &sandbox);
    let retried = eventually(20, || async {
        let p = store.payout(&id).await.expect("payout").payout;
        p.attempts >= 1 && p.status == PayoutStatus::RetryScheduled
    })
    .await;
    assert!(retried, "attempt 1 should have been refused");
    sandbox.paypal.set_balance(Currency::Usd, balance);
    worker.await.expect("worker task");
    let paid = store.payout(&id).await.expect("payout");
    assert_eq!(paid.payout.status, PayoutStatus::Paid, "{:#?}", paid.events);
    let paying = paid.payout.provider_ref.clone().expect("batch id");
    let payable_when_paid = store
        .balance(&account)
        .await
        .expect("balance")
        .program("vast", Currency::Usd)
        .map(|p| p.payable_now);

    // PayPal reports a batch under attempt 1's sender_batch_id as returned.
    let other_batch = "BATCH-OF-ATTEMPT-1";
    let event = serde_json::json!({
        "id": "WH-OBJECT-MATCH-1",
        "create_time": Utc::now().to_rfc3339(),
        "resource_type": "payouts_item",
        "event_type": "PAYMENT.PAYOUTS-ITEM.RETURNED",
        "resource_version": "1.0",
        "resource": {
            "payout_item_id": "ITEM-OF-ATTEMPT-1",
            "transaction_status": "RETURNED",
            "payout_batch_id": other_batch,
            "sender_batch_id": format!("{id}-attempt-1"),
        },
    });
    let http = reqwest::Client::new();
    let mut request = http.post(format!("{url}/paypal")).body(event.to_string());
    for (k, v) in sandbox.paypal.sign_event(&event) {
        request = request.header(k, v);
    }
    let answer = request.send().await.expect("deliver");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);

    let detail = store.payout(&id).await.expect("payout");
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "an event about another attempt's batch moved the payout: {:#?}",
        detail.events
    );
    assert_eq!(detail.payout.provider_ref.as_deref(), Some(paying.as_str()));
    let payable = store
        .balance(&account)
        .await
        .expect("balance")
        .program("vast", Currency::Usd)
        .map(|p| p.payable_now);
    assert_eq!(payable, payable_when_paid, "the payee was credited");
    assert_eq!(
        evidence_events(&detail, other_batch),
        1,
        "{:#?}",
        detail.events
    );
    assert_eq!(evidence_rows(&store, &id, other_batch).await, 1);
    let check = store.check_ledger().await.expect("check");
    assert!(check.is_ok(), "ledger problems: {:#?}", check.problems);
    sandbox.stop();
}
