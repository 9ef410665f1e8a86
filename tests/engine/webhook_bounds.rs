//! Unauthenticated webhook traffic is bounded (issue 16, B13): a delivery makes us call a
//! provider (PayPal's verification postback, PartnerStack's reward read) only when it is
//! about a payout of ours, and then only at a bounded rate; the rows a caller can make us
//! store are bounded by the provider's own states, not by the ids the caller invents; a
//! delivery naming a reward nobody has is answered, not refused forever.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, *};
use chrono::Utc;
use payouts::domain::ids::{AccountId, IdempotencyKey, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout::PayoutStatus;
use payouts::http::WebhookState;
use payouts::http::api::limits::RateLimiter;
use payouts::jobs::PayoutDeps;
use payouts::providers::partnerstack::{PartnerstackAdapter, PartnerstackConfig};
use payouts::sim::sandbox::Sandbox;
use payouts::storage::Store;
use payouts::storage::payout_views::WithdrawalRequest;

struct Setup {
    store: Store,
    sandbox: Sandbox,
    url: String,
    _db: common::TestDb,
}

/// The sandbox's receivers, with PartnerStack's token off (deliveries then authenticate only
/// by being read back) and `limit` bounding the calls deliveries make us send.
async fn setup(name: &str, limit: RateLimiter) -> Setup {
    let (db, store, sandbox) = common::all_rails_world(name).await;
    let tokenless = PartnerstackAdapter::new(PartnerstackConfig {
        webhook_token: None,
        ..sandbox.partnerstack_config()
    })
    .expect("adapter");
    let base = sandbox.webhook_state(store.clone()).expect("state");
    let state = WebhookState {
        rails: base.rails.clone().with(Arc::new(tokenless)),
        verify_limit: Arc::new(limit),
        ..base
    };
    let url = serve_webhooks(state).await;
    Setup {
        store,
        sandbox,
        url,
        _db: db,
    }
}

/// Pays `account`'s whole payable balance on `rail` and returns the payout id.
async fn paid_payout(s: &Setup, account: &str, rail: Rail) -> String {
    let account = AccountId::parse(account).expect("id");
    let program = s
        .store
        .balance(&account)
        .await
        .expect("balance")
        .programs
        .into_iter()
        .find(|p| p.currency == Currency::Usd && !p.payable_now.is_zero())
        .expect("something payable");
    let id = s
        .store
        .create_withdrawal(&WithdrawalRequest {
            account: account.clone(),
            program: program.program.clone(),
            rail,
            amount: program.payable_now,
            idempotency_key: IdempotencyKey::parse("bounds-1").expect("key"),
        })
        .await
        .expect("withdraw")
        .payout
        .id
        .to_string();
    let deps = Arc::new(PayoutDeps {
        store: s.store.clone(),
        rails: s.sandbox.rails().expect("rails"),
        policy: fast_policy(),
        lease_ttl: Duration::from_secs(10),
        worker_id: format!("bounds-{}", ulid::Ulid::generate()),
    });
    run_until_idle(deps, 2).await;
    let detail = s.store.payout(&id).await.expect("payout");
    assert_eq!(
        detail.payout.status,
        PayoutStatus::Paid,
        "{:#?}",
        detail.events
    );
    id
}

/// The provider's id for a payout's payment.
async fn provider_ref(store: &Store, id: &str) -> String {
    store
        .payout(id)
        .await
        .expect("payout")
        .payout
        .provider_ref
        .expect("provider ref")
}

/// A PayPal delivery with every transmission header present and fresh, signed by nobody.
async fn forged_paypal(url: &str, n: usize, batch: &str, sender_batch: &str) -> reqwest::Response {
    let event = serde_json::json!({
        "id": format!("WH-FORGED-{n}"),
        "create_time": Utc::now().to_rfc3339(),
        "resource_type": "payouts_item",
        "event_type": "PAYMENT.PAYOUTS-ITEM.RETURNED",
        "resource": {
            "payout_item_id": format!("ITEM-{n}"),
            "transaction_status": "RETURNED",
            "payout_batch_id": batch,
            "sender_batch_id": sender_batch,
        },
    });
    reqwest::Client::new()
        .post(format!("{url}/paypal"))
        .header("PAYPAL-TRANSMISSION-ID", format!("t-{n}"))
        .header("PAYPAL-TRANSMISSION-TIME", Utc::now().to_rfc3339())
        .header("PAYPAL-TRANSMISSION-SIG", "forged")
        .header("PAYPAL-CERT-URL", "https://api.paypal.com/certs/forged")
        .header("PAYPAL-AUTH-ALGO", "SHA256withRSA")
        .body(event.to_string())
        .send()
        .await
        .expect("deliver")
}

async fn partnerstack_hint(url: &str, id: &str, key: &str) -> reqwest::Response {
    let body = serde_json::json!({
        "id": id,
        "event": "reward.updated",
        "created_at": Utc::now().timestamp_millis(),
        "data": {"key": key},
    });
    reqwest::Client::new()
        .post(format!("{url}/partnerstack"))
        .body(body.to_string())
        .send()
        .await
        .expect("deliver")
}

async fn delivery_rows(store: &Store, rail: &str) -> i64 {
    payouts::on_backend!(store, s => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE provider = $1",
    )
    .bind(rail)
    .fetch_one(s.pool())
    .await)
    .expect("rows")
}

#[tokio::test]
async fn forged_paypal_deliveries_about_no_payout_of_ours_make_no_postback() {
    let s = setup("bounds_paypal_foreign", RateLimiter::new(1000, 1000)).await;
    for n in 0..25 {
        let answer = forged_paypal(&s.url, n, &format!("BATCH-{n}"), &format!("theirs-{n}")).await;
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }
    assert_eq!(
        s.sandbox.paypal.verify_requests(),
        0,
        "deliveries about nothing of ours made us call PayPal"
    );
    assert_eq!(delivery_rows(&s.store, "paypal").await, 0);
}

#[tokio::test]
async fn postbacks_for_deliveries_about_a_payout_are_rate_bounded() {
    let s = setup("bounds_paypal_rate", RateLimiter::new(1, 3)).await;
    let id = paid_payout(&s, "ref-gina", Rail::Paypal).await;
    let batch = provider_ref(&s.store, &id).await;
    let before = s.sandbox.paypal.verify_requests();
    let mut throttled = 0;
    for n in 0..30 {
        let answer = forged_paypal(&s.url, n, &batch, &format!("{id}-attempt-1")).await;
        match answer.status().as_u16() {
            401 => {}
            503 => {
                assert!(answer.headers().contains_key("retry-after"));
                let body: serde_json::Value = answer.json().await.expect("json");
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("deliver again later")
                );
                throttled += 1;
            }
            other => panic!("forged delivery answered {other}"),
        }
    }
    let made = s.sandbox.paypal.verify_requests() - before;
    // A burst of 3, then one a second: 30 quick deliveries cannot make more than a handful.
    assert!(made <= 10, "{made} postbacks for 30 forged deliveries");
    assert!(throttled >= 20, "only {throttled} of 30 were throttled");
    let detail = s.store.payout(&id).await.expect("payout");
    assert_eq!(detail.payout.status, PayoutStatus::Paid);
}

#[tokio::test]
async fn partnerstack_hints_naming_unknown_rewards_are_answered_without_a_read() {
    let s = setup("bounds_ps_unknown", RateLimiter::new(1000, 1000)).await;
    for n in 0..10 {
        let answer = partnerstack_hint(&s.url, &format!("evt-{n}"), &format!("nobodys-{n}")).await;
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }
    assert_eq!(s.sandbox.partnerstack.reads(), 0);
    assert_eq!(delivery_rows(&s.store, "partnerstack").await, 0);
}

#[tokio::test]
async fn partnerstack_hints_with_invented_ids_make_one_row_per_reward_state() {
    let s = setup("bounds_ps_rows", RateLimiter::new(1000, 1000)).await;
    let id = paid_payout(&s, "ref-nia", Rail::Partnerstack).await;
    let key = provider_ref(&s.store, &id).await;
    let rows_before = delivery_rows(&s.store, "partnerstack").await;
    for n in 0..15 {
        let answer = partnerstack_hint(&s.url, &format!("made-up-{n}"), &key).await;
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }
    let made = delivery_rows(&s.store, "partnerstack").await - rows_before;
    assert!(
        made <= 1,
        "{made} rows from 15 hints about one reward state"
    );
}

#[tokio::test]
async fn an_oversized_delivery_is_refused_in_the_receivers_json_shape() {
    let s = setup("bounds_413", RateLimiter::new(1000, 1000)).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/stripe", s.url))
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .expect("deliver");
    assert_eq!(answer.status(), 413);
    let body: serde_json::Value = answer.json().await.expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
}
