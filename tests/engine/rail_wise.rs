//! The Wise rail over real HTTP on loopback: the mock on port 0 and the adapter.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use payouts::domain::ids::PayoutId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{LookupFinding, SendDecision, attempt_key};
use payouts::domain::tracking::{Observation, RailState};
use payouts::providers::ProviderError;
use payouts::providers::rail::{
    Checkpoints, NoCheckpoints, PastAttempt, PayoutRail, RailFuture, Submission,
};
use payouts::providers::webhook::WebhookError;
use payouts::providers::wise::{WiseAdapter, WiseConfig, customer_transaction_id};
use payouts::sim::wise::TEST_WEBHOOK_PUBLIC_KEY_PEM;
use payouts::sim::wise::{
    FAILURE_CODE, Faults, FundingQuirks, MockWise, MockWiseConfig, RECIPIENT_BOUNCE, RECIPIENT_EUR,
    RECIPIENT_FAIL, RECIPIENT_USD, RepeatMode, sign_test_body,
};
use serde_json::Value;

const TOKEN: &str = "wise_test_token";

struct Env {
    mock: MockWise,
    wise: WiseAdapter,
}

async fn env(config: MockWiseConfig) -> Env {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let profile_id = config.profile_id;
    let mock = MockWise::start(addr, config).await.unwrap();
    let wise = WiseAdapter::new(WiseConfig {
        api_base: mock.base_url(),
        api_token: TOKEN.to_string().into(),
        profile_id,
        timeout: Duration::from_secs(5),
        webhook_public_key_pem: TEST_WEBHOOK_PUBLIC_KEY_PEM.to_string(),
    })
    .unwrap();
    Env { mock, wise }
}

fn fast() -> MockWiseConfig {
    MockWiseConfig {
        process_after_ms: 30,
        late_after_ms: 80,
        tick_ms: 10,
        ..MockWiseConfig::default()
    }
}

/// One attempt's owned parts, so a `Submission` can borrow them.
struct Attempt {
    payout: PayoutId,
    n: u32,
    key: String,
    destination: String,
    amount: Money,
    checkpoint: Option<Value>,
}

impl Attempt {
    fn new(payout: &PayoutId, n: u32, recipient: u64, amount: &str) -> Self {
        Attempt {
            payout: payout.clone(),
            n,
            key: attempt_key(payout, n),
            destination: recipient.to_string(),
            amount: Money::parse_payable(amount, Currency::Usd).unwrap(),
            checkpoint: None,
        }
    }

    fn sub(&self) -> Submission<'_> {
        Submission {
            payout_id: &self.payout,
            attempt: self.n,
            destination: &self.destination,
            amount: self.amount,
            idempotency_key: &self.key,
            checkpoint: self.checkpoint.clone(),
            left_by: None,
        }
    }

    fn past(&self, provider_ref: Option<String>) -> PastAttempt {
        PastAttempt {
            attempt: self.n,
            idempotency_key: self.key.clone(),
            started_at: Utc::now(),
            provider_ref,
            checkpoint: self.checkpoint.clone(),
        }
    }
}

/// Records every save; optionally fails every save after the first `ok` ones (a crash).
#[derive(Default)]
struct Recorder {
    saved: Mutex<Vec<Value>>,
    fail_after: Option<usize>,
}

impl Recorder {
    fn last(&self) -> Option<Value> {
        self.saved.lock().unwrap().last().cloned()
    }
    fn count(&self) -> usize {
        self.saved.lock().unwrap().len()
    }
}

impl Checkpoints for Recorder {
    fn save<'a>(&'a self, state: &'a Value) -> RailFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let mut saved = self.saved.lock().unwrap();
            if self.fail_after.is_some_and(|n| saved.len() >= n) {
                return Err(ProviderError::Transport("simulated crash".into()));
            }
            saved.push(state.clone());
            Ok(())
        })
    }
}

fn landed(d: &SendDecision) -> (String, Observation) {
    match d {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => (provider_ref.clone(), observation.clone()),
        other => panic!("expected Landed, got {other:?}"),
    }
}

fn found(f: &LookupFinding) -> (String, Observation) {
    match f {
        LookupFinding::Landed {
            provider_ref,
            observation,
        } => (provider_ref.clone(), observation.clone()),
        other => panic!("expected Landed, got {other:?}"),
    }
}

/// Polls `status` until it reports `want`, or fails at the deadline.
async fn wait_for(wise: &WiseAdapter, id: &str, want: RailState) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let obs = wise.status(id).await.unwrap();
        if obs.state == want {
            return obs;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {want:?}, last {obs:?}"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn payout() -> PayoutId {
    PayoutId::from_ulid(payouts::clock::ulid())
}

#[tokio::test]
async fn success_reaches_paid_and_checkpoints_each_step() {
    let e = env(fast()).await;
    let p = payout();
    let a = Attempt::new(&p, 1, RECIPIENT_USD, "25.00");
    let rec = Recorder::default();
    let d = e.wise.submit(&a.sub(), &rec).await;
    let (id, obs) = landed(&d);
    assert_eq!(obs.state, RailState::InFlight);
    assert_eq!(obs.provider_status, "processing");
    assert_eq!(obs.detail, None, "same currency: no rate detail");
    assert_eq!(
        rec.count(),
        2,
        "saved after the quote and after the transfer"
    );
    let cp = rec.last().unwrap();
    for field in [
        "quote_id",
        "rate",
        "source_amount",
        "target_amount",
        "target_currency",
        "expires_at",
    ] {
        assert!(cp.get(field).is_some(), "checkpoint lacks {field}: {cp}");
    }
    assert_eq!(cp["transfer_id"].as_u64().unwrap().to_string(), id);
    let paid = wait_for(&e.wise, &id, RailState::Paid).await;
    assert_eq!(paid.provider_status, "outgoing_payment_sent");
    let moved = e.mock.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].payout_id, p.as_str());
    assert_eq!(moved[0].minor, 2500);
    assert_eq!(moved[0].currency, "USD");
    assert_eq!(moved[0].state, RailState::Paid);
    let t = &e.mock.transfers()[0];
    assert_eq!(
        t.customer_transaction_id.as_deref(),
        Some(customer_transaction_id(&a.key).to_string().as_str())
    );
    assert_eq!(e.mock.balance(Currency::Usd), 1_000_000_000 - 2500);
}

#[tokio::test]
async fn non_usd_recipient_records_the_rate() {
    let e = env(fast()).await;
    let a = Attempt::new(&payout(), 1, RECIPIENT_EUR, "100.00");
    let (_, obs) = landed(&e.wise.submit(&a.sub(), &NoCheckpoints).await);
    assert_eq!(
        obs.detail.as_deref(),
        Some("rate 0.9210 USD\u{2192}EUR, recipient gets 92.10 EUR")
    );
    assert_eq!(
        e.mock.moved()[0].minor,
        10000,
        "moved() counts the source currency"
    );
}

#[tokio::test]
async fn rate_limit_is_retry_with_retry_after() {
    let e = env(MockWiseConfig {
        faults: Faults {
            rate_limit_rate: 1.0,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    match e.wise.submit(&a.sub(), &NoCheckpoints).await {
        SendDecision::Throttled { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(e.mock.transfers().is_empty());
    assert!(e.mock.moved().is_empty());
}

#[tokio::test]
async fn server_error_is_unknown_then_resolve_settles_it() {
    let e = env(MockWiseConfig {
        faults: Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let rec = Recorder::default();
    let d = e.wise.submit(&a.sub(), &rec).await;
    assert!(matches!(d, SendDecision::Unknown { .. }), "{d:?}");
    e.mock.set_faults(Faults::default());
    // Without the quote checkpoint nothing is left to continue: proven absent.
    let f = e
        .wise
        .resolve(&a.sub(), &[], Utc::now(), &rec)
        .await
        .unwrap();
    assert_eq!(f, LookupFinding::Absent);
    // With the live quote saved, the attempt continues under the same token.
    a.checkpoint = rec.last();
    let f = e
        .wise
        .resolve(&a.sub(), &[], Utc::now(), &rec)
        .await
        .unwrap();
    found(&f);
    assert_eq!(e.mock.quotes_created(), 1);
    assert_eq!(e.mock.transfers().len(), 1);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn refusals_are_permanent() {
    let e = env(fast()).await;
    let unknown_recipient = Attempt::new(&payout(), 1, 999_999, "10.00");
    let d = e
        .wise
        .submit(&unknown_recipient.sub(), &NoCheckpoints)
        .await;
    assert!(
        matches!(&d, SendDecision::Permanent { reason } if reason.contains("404")),
        "{d:?}"
    );
    let mut not_a_number = Attempt::new(&payout(), 1, 1, "10.00");
    not_a_number.destination = "someone@example.com".into();
    assert!(matches!(
        e.wise.submit(&not_a_number.sub(), &NoCheckpoints).await,
        SendDecision::Permanent { .. }
    ));
    let bad_token = WiseAdapter::new(WiseConfig {
        api_base: e.mock.base_url(),
        api_token: "wrong".to_string().into(),
        profile_id: payouts::sim::wise::PROFILE_ID,
        timeout: Duration::from_secs(5),
        webhook_public_key_pem: String::new(),
    })
    .unwrap();
    let d = bad_token
        .submit(
            &Attempt::new(&payout(), 1, RECIPIENT_USD, "1.00").sub(),
            &NoCheckpoints,
        )
        .await;
    assert!(
        matches!(&d, SendDecision::Permanent { reason } if reason.contains("401") && reason.contains("invalid_token")),
        "{d:?}"
    );
    assert!(e.mock.moved().is_empty());
}

#[tokio::test]
async fn funding_rejected_is_permanent_and_the_transfer_cancelled() {
    let e = env(fast()).await;
    e.mock.set_balance(Currency::Usd, 500);
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let d = e.wise.submit(&a.sub(), &NoCheckpoints).await;
    assert!(
        matches!(&d, SendDecision::Permanent { reason } if reason.contains("balance.payment-option-unavailable")),
        "{d:?}"
    );
    assert_eq!(e.mock.transfers()[0].status, "cancelled");
    assert!(e.mock.moved().is_empty());
    assert_eq!(e.mock.balance(Currency::Usd), 500);
}

/// Issue 16, B7: a `REJECTED` funding answer is not proof that nothing moved. The transfer is
/// read again; one that moved on is reported as what it is.
#[tokio::test]
async fn a_rejected_funding_that_funded_anyway_is_read_back_not_failed() {
    let e = env(fast()).await;
    e.mock.set_funding_quirks(FundingQuirks {
        reject_after_funding: true,
        ..FundingQuirks::default()
    });
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let d = e.wise.submit(&a.sub(), &NoCheckpoints).await;
    let (id, _) = landed(&d);
    assert_eq!(id, e.mock.transfers()[0].id.to_string());
    assert_ne!(e.mock.transfers()[0].status, "cancelled");
    wait_for(&e.wise, &id, RailState::Paid).await;
    assert_eq!(e.mock.moved().len(), 1);
}

/// Issue 16, B7: when the unfunded transfer cannot be cancelled it could still be funded
/// later, so the outcome is unknown, never a failure that would free the money.
#[tokio::test]
async fn a_rejected_funding_whose_cancel_fails_is_unknown() {
    let e = env(fast()).await;
    e.mock.set_balance(Currency::Usd, 500);
    e.mock.set_funding_quirks(FundingQuirks {
        cancel_fails: true,
        ..FundingQuirks::default()
    });
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let d = e.wise.submit(&a.sub(), &NoCheckpoints).await;
    assert!(
        matches!(&d, SendDecision::Unknown { reason } if reason.contains("could not be cancelled")),
        "{d:?}"
    );
    assert!(e.mock.moved().is_empty());
}

#[tokio::test]
async fn drops_after_commit_on_create_and_on_funding_resolve_to_one_payment() {
    let e = env(MockWiseConfig {
        faults: Faults {
            drop_first_attempt: true,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let rec = Recorder::default();
    let d = e.wise.submit(&a.sub(), &rec).await;
    assert!(matches!(d, SendDecision::Unknown { .. }), "{d:?}");
    assert_eq!(e.mock.transfers().len(), 1, "the transfer was committed");
    a.checkpoint = rec.last();
    // Resolve continues the attempt: funding commits, then the connection drops too.
    let r = e.wise.resolve(&a.sub(), &[], Utc::now(), &rec).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(e.mock.moved().len(), 1);
    e.mock.set_faults(Faults::default());
    let (id, _) = found(
        &e.wise
            .resolve(&a.sub(), &[], Utc::now(), &rec)
            .await
            .unwrap(),
    );
    assert_eq!(id, e.mock.transfers()[0].id.to_string());
    assert_eq!(e.mock.transfers().len(), 1);
    assert_eq!(e.mock.moved().len(), 1, "exactly one payment");
}

#[tokio::test]
async fn error_after_commit_resolves_to_the_single_payment() {
    let e = env(MockWiseConfig {
        faults: Faults {
            error_after_commit_rate: 1.0,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let d = e.wise.submit(&a.sub(), &NoCheckpoints).await;
    assert!(matches!(d, SendDecision::Unknown { .. }), "{d:?}");
    e.mock.set_faults(Faults::default());
    // No checkpoint was kept: the listing by customerTransactionId finds the transfer.
    found(
        &e.wise
            .resolve(&a.sub(), &[], Utc::now(), &NoCheckpoints)
            .await
            .unwrap(),
    );
    assert_eq!(e.mock.transfers().len(), 1);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn expired_token_window_still_never_pays_twice() {
    let e = env(MockWiseConfig {
        faults: Faults {
            drop_first_attempt: true,
            key_ttl_ms: 1,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let rec = Recorder::default();
    assert!(matches!(
        e.wise.submit(&a.sub(), &rec).await,
        SendDecision::Unknown { .. }
    ));
    // Let the mock forget the customerTransactionId (its ttl is 1 ms).
    tokio::time::sleep(Duration::from_millis(10)).await;
    e.mock.set_faults(Faults {
        key_ttl_ms: 1,
        ..Faults::default()
    });
    a.checkpoint = rec.last();
    // Re-submitting from the quote checkpoint: the quote is used, the token forgotten; the
    // adapter finds its transfer by listing instead of creating another.
    let (id1, _) = landed(&e.wise.submit(&a.sub(), &rec).await);
    let (id2, _) = found(
        &e.wise
            .resolve(&a.sub(), &[], Utc::now(), &rec)
            .await
            .unwrap(),
    );
    assert_eq!(id1, id2);
    assert_eq!(e.mock.transfers().len(), 1);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn crash_after_the_quote_checkpoint_resumes_without_a_second_quote_or_transfer() {
    let e = env(fast()).await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    // The process "dies" right after the quote was saved: the next save fails.
    let crashing = Recorder {
        fail_after: Some(1),
        ..Recorder::default()
    };
    let d = e.wise.submit(&a.sub(), &crashing).await;
    assert!(matches!(d, SendDecision::Unknown { .. }), "{d:?}");
    assert_eq!(crashing.count(), 1);
    assert!(
        e.mock.moved().is_empty(),
        "not funded before the transfer was saved"
    );
    a.checkpoint = crashing.last();
    let rec = Recorder::default();
    landed(&e.wise.submit(&a.sub(), &rec).await);
    assert_eq!(e.mock.quotes_created(), 1, "no second quote");
    assert_eq!(e.mock.transfers().len(), 1, "no second transfer");
    assert_eq!(e.mock.moved().len(), 1);
    // Submitting the finished attempt again reports it and never funds twice.
    a.checkpoint = rec.last();
    landed(&e.wise.submit(&a.sub(), &rec).await);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn expired_quote_without_a_transfer_is_replaced() {
    let e = env(fast()).await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let crashing = Recorder {
        fail_after: Some(0),
        ..Recorder::default()
    };
    // Quote made, its save "crashes": nothing else happens.
    assert!(matches!(
        e.wise.submit(&a.sub(), &crashing).await,
        SendDecision::Retry { .. }
    ));
    let mut cp = serde_json::json!({
        "quote_id": "00000000-0000-0000-0000-000000000000",
        "rate": "1", "source_amount": "10.00", "target_amount": "10.00",
        "target_currency": "USD", "expires_at": "2020-01-01T00:00:00Z"
    });
    a.checkpoint = Some(cp.take());
    landed(&e.wise.submit(&a.sub(), &NoCheckpoints).await);
    assert_eq!(e.mock.quotes_created(), 2);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn repeated_customer_transaction_id_returns_the_same_transfer() {
    let e = env(fast()).await;
    let http = reqwest::Client::new();
    let base = e.mock.base_url();
    let profile = payouts::sim::wise::PROFILE_ID;
    let quote: Value = http
        .post(format!("{base}/v3/profiles/{profile}/quotes"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"sourceCurrency":"USD","targetCurrency":"USD","sourceAmount":5.00,"targetAccount":1001,"payOut":"BANK_TRANSFER","preferredPayIn":"BALANCE"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ctid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({"targetAccount": 1001, "quoteUuid": quote["id"], "customerTransactionId": ctid, "details": {"reference": "po_x"}});
    let post = || async {
        http.post(format!("{base}/v1/transfers"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let first: Value = post().await.json().await.unwrap();
    let again = post().await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    e.mock.set_repeat_mode(RepeatMode::Conflict);
    assert_eq!(post().await.status().as_u16(), 409);
    assert_eq!(e.mock.transfers().len(), 1, "never a second transfer");
    let bad = serde_json::json!({"targetAccount": 1001, "quoteUuid": quote["id"], "customerTransactionId": "po_x-attempt-1"});
    let r = http
        .post(format!("{base}/v1/transfers"))
        .bearer_auth(TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
}

#[tokio::test]
async fn conflict_mode_repeat_is_found_by_listing() {
    let e = env(MockWiseConfig {
        repeat_mode: RepeatMode::Conflict,
        ..fast()
    })
    .await;
    let mut a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let crashing = Recorder {
        fail_after: Some(1),
        ..Recorder::default()
    };
    assert!(matches!(
        e.wise.submit(&a.sub(), &crashing).await,
        SendDecision::Unknown { .. }
    ));
    a.checkpoint = crashing.last();
    landed(&e.wise.submit(&a.sub(), &NoCheckpoints).await);
    assert_eq!(e.mock.transfers().len(), 1);
    assert_eq!(e.mock.moved().len(), 1);
}

#[tokio::test]
async fn resolve_across_attempts_finds_landed_and_duplicates() {
    let e = env(fast()).await;
    let p = payout();
    let a1 = Attempt::new(&p, 1, RECIPIENT_USD, "10.00");
    let (id1, _) = landed(&e.wise.submit(&a1.sub(), &NoCheckpoints).await);
    let a2 = Attempt::new(&p, 2, RECIPIENT_USD, "10.00");
    let (id, _) = found(
        &e.wise
            .resolve(&a2.sub(), &[a1.past(None)], Utc::now(), &NoCheckpoints)
            .await
            .unwrap(),
    );
    assert_eq!(
        id, id1,
        "the earlier attempt's payment is found, nothing new sent"
    );
    assert_eq!(e.mock.moved().len(), 1);
    // Money left twice (e.g. by hand): resolve must say so.
    let (id2, _) = landed(&e.wise.submit(&a2.sub(), &NoCheckpoints).await);
    let a3 = Attempt::new(&p, 3, RECIPIENT_USD, "10.00");
    match e
        .wise
        .resolve(
            &a3.sub(),
            &[a1.past(None), a2.past(None)],
            Utc::now(),
            &NoCheckpoints,
        )
        .await
        .unwrap()
    {
        LookupFinding::Duplicate { mut provider_refs } => {
            provider_refs.sort();
            let mut want = vec![id1, id2];
            want.sort();
            assert_eq!(provider_refs, want);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[tokio::test]
async fn late_outcomes_reach_the_right_state() {
    let e = env(fast()).await;
    let bounce = Attempt::new(&payout(), 1, RECIPIENT_BOUNCE, "10.00");
    let (id, _) = landed(&e.wise.submit(&bounce.sub(), &NoCheckpoints).await);
    wait_for(&e.wise, &id, RailState::Paid).await;
    // bounced_back is not yet money back: still in flight.
    let back = wait_for(&e.wise, &id, RailState::InFlight).await;
    assert_eq!(back.provider_status, "bounced_back");
    let refunded = wait_for(&e.wise, &id, RailState::Returned).await;
    assert_eq!(refunded.provider_status, "funds_refunded");
    assert_eq!(e.mock.moved()[0].state, RailState::Returned);
    assert_eq!(
        e.mock.balance(Currency::Usd),
        1_000_000_000,
        "money back in the balance"
    );

    let fail = Attempt::new(&payout(), 1, RECIPIENT_FAIL, "10.00");
    let (id, _) = landed(&e.wise.submit(&fail.sub(), &NoCheckpoints).await);
    let failed = wait_for(&e.wise, &id, RailState::Failed).await;
    assert_eq!(failed.provider_status, "cancelled");
    assert_eq!(e.mock.failure_code(&id).as_deref(), Some(FAILURE_CODE));

    let ok = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let (id, _) = landed(&e.wise.submit(&ok.sub(), &NoCheckpoints).await);
    assert!(e.mock.advance(&id, "charged_back"));
    assert_eq!(e.wise.status(&id).await.unwrap().state, RailState::Returned);
}

async fn receiver() -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

fn header_map(pairs: &[(String, String)]) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[tokio::test]
async fn signed_webhooks_accepted_forged_tampered_and_stale_rejected() {
    let e = env(MockWiseConfig {
        duplicate_webhooks: true,
        out_of_order_webhooks: true,
        ..fast()
    })
    .await;
    e.mock.outbox().set_target(Some(receiver().await));
    let a = Attempt::new(&payout(), 1, RECIPIENT_USD, "10.00");
    let (id, _) = landed(&e.wise.submit(&a.sub(), &NoCheckpoints).await);
    // created, processing, funds_converted, outgoing_payment_sent: each delivered twice.
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.mock.outbox().deliveries().len() < 8 {
        assert!(Instant::now() < deadline, "webhooks never all arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = Utc::now();
    let mut events = Vec::new();
    for d in e.mock.outbox().deliveries() {
        let event = e
            .wise
            .verify_webhook(&header_map(&d.headers), &d.body, now)
            .unwrap();
        assert_eq!(event.provider_ref.as_deref(), Some(id.as_str()));
        events.push(event);
    }
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "duplicates share an event id");
    // Whatever order they came in, occurred_at orders them: the latest is the payment sent.
    let latest = events
        .iter()
        .filter_map(|e| e.observation.clone())
        .max_by_key(|o| o.occurred_at)
        .unwrap();
    assert_eq!(latest.state, RailState::Paid);

    let d = &e.mock.outbox().deliveries()[0];
    let mut tampered = d.body.clone();
    let text = String::from_utf8(tampered.clone()).unwrap();
    tampered = text.replacen(&id, "1", 1).into_bytes();
    assert_eq!(
        e.wise
            .verify_webhook(&header_map(&d.headers), &tampered, now),
        Err(WebhookError::BadSignature)
    );
    let mut forged = d.headers.clone();
    for (k, v) in forged.iter_mut() {
        if k.eq_ignore_ascii_case("x-signature-sha256") {
            *v = sign_test_body(b"something else").unwrap();
        }
    }
    assert_eq!(
        e.wise.verify_webhook(&header_map(&forged), &d.body, now),
        Err(WebhookError::BadSignature)
    );
    let later: DateTime<Utc> = now + chrono::Duration::days(30);
    assert!(matches!(
        e.wise
            .verify_webhook(&header_map(&d.headers), &d.body, later),
        Err(WebhookError::Stale { .. })
    ));
}
