//! Stripe over real HTTP: a transfer reversed after delivery reaches us as a signed
//! `transfer.reversed` webhook, reverses the ledger and shows in the balance; forged, stale,
//! duplicate and out-of-order deliveries change nothing.

use crate::common::*;
use chrono::Utc;
use payouts::domain::payout::PayoutStatus;
use payouts::domain::tracking::RailState;
use payouts::providers::stripe::webhook::{SIGNATURE_HEADER, sign};
use payouts::sim::stripe::Faults;
use secrecy::SecretString;

const BOUNCING_ALICE: &str = r#"{"type":"payout_method","account":"ref-alice","rail":"stripe","destination":"acct_bounceAlice"}"#;

async fn setup() -> (TestEnv, String) {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    env.ingest(BOUNCING_ALICE).await;
    let url = env.serve_stripe_webhooks().await;
    (env, url)
}

#[tokio::test]
async fn a_reversal_after_delivery_returns_the_money_to_the_balance() {
    let (env, _url) = setup().await;
    let before = env.payable("ref-alice").await;
    let id = env
        .withdraw("ref-alice", before, "w-1")
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string();
    env.work_until_idle(env.deps()).await;
    let returned = eventually(10, || async {
        env.store.payout(&id).await.expect("payout").payout.status == PayoutStatus::Returned
    })
    .await;
    let detail = env.store.payout(&id).await.expect("payout");
    assert!(returned, "payout should be returned: {:#?}", detail.events);
    assert!(
        detail
            .events
            .iter()
            .any(|e| e.source.as_deref() == Some("webhook") && e.to == "returned")
    );
    assert_eq!(detail.payout.provider_status.as_deref(), Some("reversed"));
    // The money is back and payable again; the mock agrees nothing stayed out.
    assert_eq!(env.payable("ref-alice").await, before);
    let moved = env.mock.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].state, RailState::Returned);
    assert_eq!(moved[0].minor, 0);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn forged_stale_duplicate_and_out_of_order_deliveries_change_nothing() {
    let (env, url) = setup().await;
    let amount = env.payable("ref-mo").await;
    let id = env
        .withdraw("ref-mo", amount, "w-2")
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string();
    env.work_until_idle(env.deps()).await;
    assert_eq!(
        env.store.payout(&id).await.unwrap().payout.status,
        PayoutStatus::Paid
    );
    let transfer = env.mock.transfers().pop().expect("transfer");

    // A reversal event for the real transfer, but signed by someone else.
    let mut reversed = transfer.clone();
    reversed.reversed = true;
    reversed.amount_reversed = reversed.amount;
    let event = |id: &str, kind: &str, t: &payouts::providers::stripe::wire::Transfer, at: i64| {
        serde_json::json!({"id": id, "object": "event", "type": kind, "created": at,
                           "data": {"object": t}})
        .to_string()
    };
    let now = Utc::now().timestamp();
    let http = reqwest::Client::new();
    let post = |body: String, signature: String| {
        http.post(format!("{url}/stripe"))
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
    };
    let body = event("evt_forged", "transfer.reversed", &reversed, now);
    let forged = post(
        body.clone(),
        sign(&SecretString::from("whsec_evil"), now, body.as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    let stale_at = now - 3600;
    let body = event("evt_stale", "transfer.reversed", &reversed, stale_at);
    let stale = post(
        body.clone(),
        sign(&SecretString::from("whsec_mock"), stale_at, body.as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), 401);
    let garbage = post(
        "{not json".into(),
        sign(&SecretString::from("whsec_mock"), now, b"{not json"),
    )
    .await
    .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(
        env.store.payout(&id).await.unwrap().payout.status,
        PayoutStatus::Paid
    );

    // The genuine reversal, delivered twice, then an older "created" event arriving late.
    let body = event("evt_rev", "transfer.reversed", &reversed, now);
    let sig = sign(&SecretString::from("whsec_mock"), now, body.as_bytes());
    for _ in 0..2 {
        let r = post(body.clone(), sig.clone()).await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let body = event("evt_created", "transfer.created", &transfer, now - 60);
    let sig = sign(&SecretString::from("whsec_mock"), now, body.as_bytes());
    assert_eq!(post(body, sig).await.unwrap().status(), 200);

    let detail = env.store.payout(&id).await.unwrap();
    assert_eq!(detail.payout.status, PayoutStatus::Returned);
    let returns = detail.events.iter().filter(|e| e.to == "returned").count();
    assert_eq!(
        returns, 1,
        "one transition, however often it is told: {:#?}",
        detail.events
    );
    env.assert_ledger_sound().await;
}
