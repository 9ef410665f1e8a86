//! PayPal rail over real HTTP on loopback: the mock on port 0 and the adapter.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::Utc;
use secrecy::SecretString;

use payouts::domain::ids::PayoutId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{LookupFinding, SendDecision, attempt_key};
use payouts::domain::tracking::RailState;
use payouts::providers::paypal::{PaypalAdapter, PaypalConfig};
use payouts::providers::rail::{NoCheckpoints, PayoutRail, Submission};
use payouts::providers::webhook::WebhookError;
use payouts::sim::kit::Faults;
use payouts::sim::paypal::{MockPaypal, MockPaypalConfig};

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn mock_with(config: MockPaypalConfig) -> MockPaypal {
    MockPaypal::start(any_addr(), config).await.unwrap()
}

async fn mock() -> MockPaypal {
    mock_with(MockPaypalConfig::default()).await
}

fn config_for(mock: &MockPaypal) -> PaypalConfig {
    let mut c = PaypalConfig::new(
        mock.base_url(),
        "mock-client-id",
        SecretString::from("mock-client-secret"),
        mock.webhook_id(),
    );
    c.timeout = Duration::from_secs(5);
    c
}

fn adapter(mock: &MockPaypal) -> PaypalAdapter {
    PaypalAdapter::new(config_for(mock)).unwrap()
}

/// An owned attempt, so tests can borrow a `Submission` from it.
struct Attempt {
    payout: PayoutId,
    key: String,
    dest: String,
    amount: Money,
    attempt: u32,
}

impl Attempt {
    fn new(dest: &str, amount: &str, currency: Currency) -> Self {
        let payout = PayoutId::from_ulid(payouts::clock::ulid());
        Attempt {
            key: attempt_key(&payout, 1),
            payout,
            dest: dest.into(),
            amount: Money::parse(amount, currency, 6).unwrap(),
            attempt: 1,
        }
    }

    fn sub(&self) -> Submission<'_> {
        Submission {
            payout_id: &self.payout,
            attempt: self.attempt,
            destination: &self.dest,
            amount: self.amount,
            idempotency_key: &self.key,
            checkpoint: None,
            left_by: None,
        }
    }
}

fn landed(d: SendDecision) -> (String, payouts::domain::tracking::Observation) {
    match d {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => (provider_ref, observation),
        other => panic!("expected Landed, got {other:?}"),
    }
}

/// Polls `status` until it reports `want`, or fails after a deadline.
async fn wait_state(a: &PaypalAdapter, batch: &str, want: RailState, word: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let obs = a.status(batch).await.unwrap();
        if obs.state == want && obs.provider_status == word {
            return obs.detail.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{batch} never reached {want:?}/{word}; last {obs:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn success_reaches_paid_and_the_mock_paid_once() {
    let m = mock().await;
    let a = adapter(&m);
    let t = Attempt::new("alice@example.com", "12.3", Currency::Usd);
    let (batch, obs) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    assert_eq!(obs.state, RailState::InFlight);
    assert_eq!(obs.provider_status, "PENDING");
    wait_state(&a, &batch, RailState::Paid, "SUCCESS").await;
    let moved = m.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].payout_id, t.payout.to_string());
    assert_eq!(moved[0].provider_ref, batch);
    assert_eq!((moved[0].currency.as_str(), moved[0].minor), ("USD", 1230));
    assert_eq!(moved[0].state, RailState::Paid);
    assert_eq!(m.balance(Currency::Usd), 1_000_000_000 - 1230);
    m.stop();
}

#[tokio::test]
async fn zero_decimal_currency_is_sent_without_decimals() {
    let m = mock().await;
    let a = adapter(&m);
    let t = Attempt::new("bob@example.com", "1230", Currency::Jpy);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    let moved = m.moved();
    assert_eq!((moved[0].currency.as_str(), moved[0].minor), ("JPY", 1230));
    assert_eq!(moved[0].provider_ref, batch);
    m.stop();
}

#[tokio::test]
async fn token_is_cached_and_refreshed_once_when_expired() {
    let m = mock().await;
    let a = adapter(&m);
    for _ in 0..2 {
        let t = Attempt::new("carol@example.com", "5.00", Currency::Usd);
        landed(a.submit(&t.sub(), &NoCheckpoints).await);
    }
    assert_eq!(m.token_requests(), 1, "two payouts, one token");
    m.expire_tokens();
    let t = Attempt::new("carol@example.com", "6.00", Currency::Usd);
    landed(a.submit(&t.sub(), &NoCheckpoints).await);
    assert_eq!(m.token_requests(), 2, "one refresh after the 401");
    assert_eq!(m.moved().len(), 3);
    m.stop();
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_expiry() {
    let m = mock_with(MockPaypalConfig {
        token_ttl: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let a = adapter(&m);
    let t = Attempt::new("dan@example.com", "1.00", Currency::Usd);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.status(&batch).await.unwrap();
    assert_eq!(m.token_requests(), 2, "renewed at half-life, no 401 needed");
    m.stop();
}

#[tokio::test]
async fn bad_credentials_are_retry_and_move_nothing() {
    let m = mock().await;
    let mut c = config_for(&m);
    c.client_secret = SecretString::from("wrong");
    let a = PaypalAdapter::new(c).unwrap();
    let t = Attempt::new("erin@example.com", "1.00", Currency::Usd);
    match a.submit(&t.sub(), &NoCheckpoints).await {
        SendDecision::Retry { reason, .. } => {
            assert!(reason.contains("invalid_client"), "{reason}");
            assert!(!reason.contains("wrong"), "secret leaked: {reason}");
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(m.payout_requests(), 0);
    assert!(m.moved().is_empty());
    m.stop();
}

#[tokio::test]
async fn rate_limit_is_retry_with_retry_after() {
    let m = mock().await;
    m.set_faults(Faults {
        rate_limit_rate: 1.0,
        ..Default::default()
    });
    let a = adapter(&m);
    let t = Attempt::new("f@example.com", "1.00", Currency::Usd);
    match a.submit(&t.sub(), &NoCheckpoints).await {
        SendDecision::Throttled {
            reason,
            retry_after,
        } => {
            assert!(reason.contains("RATE_LIMIT_REACHED"), "{reason}");
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(m.moved().is_empty());
    // A resolve that is rate limited proves nothing: it is an error, retried later.
    assert!(
        a.resolve(&t.sub(), &[], Utc::now(), &NoCheckpoints)
            .await
            .is_err()
    );
    assert!(m.moved().is_empty());
    m.stop();
}

#[tokio::test]
async fn server_error_before_commit_is_unknown_and_resolve_sends_once() {
    let m = mock().await;
    m.set_faults(Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    let a = adapter(&m);
    let t = Attempt::new("g@example.com", "2.00", Currency::Usd);
    match a.submit(&t.sub(), &NoCheckpoints).await {
        SendDecision::Unknown { reason } => assert!(reason.contains("INTERNAL_ERROR"), "{reason}"),
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert!(m.moved().is_empty());
    m.set_faults(Faults::default());
    let found = a
        .resolve(&t.sub(), &[], Utc::now(), &NoCheckpoints)
        .await
        .unwrap();
    let LookupFinding::Landed { provider_ref, .. } = found else {
        panic!("expected Landed, got {found:?}");
    };
    let moved = m.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].provider_ref, provider_ref);
    m.stop();
}

#[tokio::test]
async fn server_error_after_commit_resolves_to_the_single_batch() {
    let m = mock().await;
    m.set_faults(Faults {
        error_after_commit_rate: 1.0,
        ..Default::default()
    });
    let a = adapter(&m);
    let t = Attempt::new("h@example.com", "3.00", Currency::Usd);
    assert!(matches!(
        a.submit(&t.sub(), &NoCheckpoints).await,
        SendDecision::Unknown { .. }
    ));
    // The fault stays on: the re-send hits the duplicate check before any fault.
    let found = a
        .resolve(&t.sub(), &[], Utc::now(), &NoCheckpoints)
        .await
        .unwrap();
    let LookupFinding::Landed { provider_ref, .. } = found else {
        panic!("expected Landed, got {found:?}");
    };
    let moved = m.moved();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].provider_ref, provider_ref);
    m.stop();
}

#[tokio::test]
async fn drop_after_commit_then_duplicate_is_landed_exactly_once() {
    let m = mock().await;
    m.set_faults(Faults {
        drop_first_attempt: true,
        ..Default::default()
    });
    let a = adapter(&m);
    let t = Attempt::new("i@example.com", "4.56", Currency::Usd);
    match a.submit(&t.sub(), &NoCheckpoints).await {
        SendDecision::Unknown { reason } => assert!(
            reason.contains("no response") || reason.contains("cut off"),
            "{reason}"
        ),
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(m.moved().len(), 1, "the mock committed before dropping");
    let found = a
        .resolve(&t.sub(), &[], Utc::now(), &NoCheckpoints)
        .await
        .unwrap();
    let LookupFinding::Landed {
        provider_ref,
        observation,
    } = found
    else {
        panic!("expected Landed, got {found:?}");
    };
    assert_eq!(observation.state, RailState::InFlight);
    // Re-submitting the same attempt also lands on the same batch, never a second one.
    let (again, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    assert_eq!(again, provider_ref);
    let moved = m.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].provider_ref, provider_ref);
    assert_eq!(moved[0].payout_id, t.payout.to_string());
    m.stop();
}

#[tokio::test]
async fn expired_dedupe_window_is_unprovable_and_never_resends() {
    let m = mock().await;
    m.set_faults(Faults {
        drop_first_attempt: true,
        key_ttl_ms: 200,
        ..Default::default()
    });
    let mut c = config_for(&m);
    c.dedupe_window = Duration::from_secs(2);
    let a = PaypalAdapter::new(c).unwrap();
    assert_eq!(a.dedupe_window(), Some(Duration::from_secs(2)));
    let t = Attempt::new("j@example.com", "7.00", Currency::Usd);
    let started = Utc::now();
    assert!(matches!(
        a.submit(&t.sub(), &NoCheckpoints).await,
        SendDecision::Unknown { .. }
    ));
    tokio::time::sleep(Duration::from_millis(300)).await; // the mock has forgotten the id
    let requests = m.payout_requests();
    // Past window minus margin (2 s - 1 s): no re-send, an operator must look.
    let late = started - chrono::Duration::seconds(2);
    let found = a
        .resolve(&t.sub(), &[], late, &NoCheckpoints)
        .await
        .unwrap();
    let LookupFinding::Unprovable { reason } = found else {
        panic!("expected Unprovable, got {found:?}");
    };
    assert!(reason.contains(&t.key), "{reason}");
    assert!(reason.contains("dashboard"), "{reason}");
    assert_eq!(m.payout_requests(), requests, "nothing was re-sent");
    assert_eq!(m.moved().len(), 1, "still exactly one payment");
    m.stop();
}

#[tokio::test]
async fn validation_refusal_is_permanent_and_resolve_says_refused() {
    let m = mock().await;
    let a = adapter(&m);
    let t = Attempt::new("not-an-email", "1.00", Currency::Usd);
    match a.submit(&t.sub(), &NoCheckpoints).await {
        SendDecision::Permanent { reason } => {
            assert!(reason.contains("VALIDATION_ERROR"), "{reason}");
            assert!(reason.contains("items[0].receiver"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    let found = a
        .resolve(&t.sub(), &[], Utc::now(), &NoCheckpoints)
        .await
        .unwrap();
    assert!(matches!(found, LookupFinding::Refused { .. }), "{found:?}");
    // A sub-cent amount is refused before anything is sent.
    let sub_cent = Attempt::new("k@example.com", "1.005", Currency::Usd);
    assert!(matches!(
        a.submit(&sub_cent.sub(), &NoCheckpoints).await,
        SendDecision::Permanent { .. }
    ));
    assert_eq!(m.payout_requests(), 2);
    assert!(m.moved().is_empty());
    m.stop();
}

#[tokio::test]
async fn insufficient_sender_balance_is_retry() {
    let m = mock().await;
    m.set_balance(Currency::Usd, 100);
    let a = adapter(&m);
    let t = Attempt::new("l@example.com", "1.01", Currency::Usd);
    assert!(matches!(
        a.submit(&t.sub(), &NoCheckpoints).await,
        SendDecision::Retry { .. }
    ));
    assert!(m.moved().is_empty());
    m.stop();
}

#[tokio::test]
async fn unclaimed_stays_in_flight_then_returns_and_credits_back() {
    let m = mock().await;
    let a = adapter(&m);
    let t = Attempt::new("unclaimed-1@example.com", "8.00", Currency::Usd);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    let detail = wait_state(&a, &batch, RailState::InFlight, "UNCLAIMED").await;
    assert_eq!(detail, "RECEIVER_UNREGISTERED");
    wait_state(&a, &batch, RailState::Returned, "RETURNED").await;
    assert_eq!(m.moved()[0].state, RailState::Returned);
    assert_eq!(m.balance(Currency::Usd), 1_000_000_000, "credited back");
    m.stop();
}

#[tokio::test]
async fn scripted_late_outcomes_reach_the_right_state() {
    let m = mock().await;
    let a = adapter(&m);
    let fail = Attempt::new("fail-1@example.com", "1.00", Currency::Usd);
    let hold = Attempt::new("hold-1@example.com", "1.00", Currency::Usd);
    let reverse = Attempt::new("reverse-1@example.com", "1.00", Currency::Usd);
    let (fb, _) = landed(a.submit(&fail.sub(), &NoCheckpoints).await);
    let (hb, _) = landed(a.submit(&hold.sub(), &NoCheckpoints).await);
    let (rb, _) = landed(a.submit(&reverse.sub(), &NoCheckpoints).await);
    let detail = wait_state(&a, &fb, RailState::Failed, "FAILED").await;
    assert_eq!(detail, "RECEIVER_UNREGISTERED");
    wait_state(&a, &hb, RailState::InFlight, "ONHOLD").await;
    wait_state(&a, &hb, RailState::Paid, "SUCCESS").await;
    wait_state(&a, &rb, RailState::Paid, "SUCCESS").await;
    wait_state(&a, &rb, RailState::Returned, "REVERSED").await;
    // Advance by hand, and read the item endpoint.
    let batch = a.batch(&hb).await.unwrap();
    let item = a.item(&batch.items[0].payout_item_id).await.unwrap();
    assert_eq!(item.transaction_status, "SUCCESS");
    assert_eq!(
        item.payout_item.sender_item_id.as_deref(),
        Some(hold.payout.as_str())
    );
    assert!(m.advance(&hb, "REFUNDED"));
    wait_state(&a, &hb, RailState::Returned, "REFUNDED").await;
    assert!(a.status("NOSUCHBATCH").await.is_err());
    m.stop();
}

/// A receiver that answers 200 to every delivery, so the outbox records them.
async fn sink() -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(any_addr()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn set(pairs: &mut [(String, String)], name: &str, value: &str) {
    for (k, v) in pairs.iter_mut() {
        if k.eq_ignore_ascii_case(name) {
            *v = value.into();
        }
    }
}

#[tokio::test]
async fn webhooks_verify_by_postback_and_refuse_forged_stale_malformed() {
    let m = mock_with(MockPaypalConfig {
        duplicate_webhooks: true,
        ..Default::default()
    })
    .await;
    m.outbox().set_target(Some(sink().await));
    let a = adapter(&m);
    let t = Attempt::new("webhook@example.com", "9.99", Currency::Usd);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let found =
            m.outbox().deliveries().into_iter().find(|d| {
                String::from_utf8_lossy(&d.body).contains("PAYMENT.PAYOUTS-ITEM.SUCCEEDED")
            });
        if let Some(d) = found {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no item webhook");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let event = a
        .verify_webhook(&header_map(&delivery.headers), &delivery.body)
        .await
        .unwrap();
    assert_eq!(event.provider_ref.as_deref(), Some(batch.as_str()));
    assert_eq!(event.our_token.as_deref(), Some(t.key.as_str()));
    assert_eq!(event.observation.unwrap().state, RailState::Paid);

    // Duplicate delivery: same event id, so the receiver can drop the repeat. The repeat is
    // sent after the first, so it is waited for (checking at once raced it).
    let repeated = crate::common::eventually(10, || async {
        m.outbox()
            .deliveries()
            .into_iter()
            .filter(|d| d.body == delivery.body)
            .count()
            >= 2
    })
    .await;
    assert!(repeated, "duplicate delivery expected");

    // Forged body: a different state under the original signature.
    let forged = String::from_utf8(delivery.body.clone())
        .unwrap()
        .replace("\"SUCCESS\"", "\"RETURNED\"");
    assert_eq!(
        a.verify_webhook(&header_map(&delivery.headers), forged.as_bytes())
            .await,
        Err(WebhookError::BadSignature)
    );
    // Forged signature.
    let mut bad_sig = delivery.headers.clone();
    set(&mut bad_sig, "PAYPAL-TRANSMISSION-SIG", "Zm9yZ2Vk");
    assert_eq!(
        a.verify_webhook(&header_map(&bad_sig), &delivery.body)
            .await,
        Err(WebhookError::BadSignature)
    );
    // Stale: refused before any postback.
    let mut stale = delivery.headers.clone();
    let old = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    set(&mut stale, "PAYPAL-TRANSMISSION-TIME", &old);
    assert!(matches!(
        a.verify_webhook(&header_map(&stale), &delivery.body).await,
        Err(WebhookError::Stale { .. })
    ));
    // Malformed body and missing header.
    assert!(matches!(
        a.verify_webhook(&header_map(&delivery.headers), b"{not json")
            .await,
        Err(WebhookError::Malformed(_))
    ));
    let missing: Vec<_> = delivery
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("PAYPAL-TRANSMISSION-ID"))
        .cloned()
        .collect();
    assert!(matches!(
        a.verify_webhook(&header_map(&missing), &delivery.body)
            .await,
        Err(WebhookError::MissingHeader(_))
    ));
    // An adapter subscribed under another webhook id does not accept it.
    let mut other = config_for(&m);
    other.webhook_id = "WH-SOMEONE-ELSE".into();
    let other = PaypalAdapter::new(other).unwrap();
    assert_eq!(
        other
            .verify_webhook(&header_map(&delivery.headers), &delivery.body)
            .await,
        Err(WebhookError::BadSignature)
    );
    m.stop();
}

#[test]
fn config_debug_redacts_the_secret_and_base_is_checked() {
    let c = PaypalConfig::new(
        "ftp://nope",
        "id",
        SecretString::from("super-secret-value"),
        "WH-1",
    );
    assert!(!format!("{c:?}").contains("super-secret-value"));
    assert!(PaypalAdapter::new(c).is_err());
}

#[tokio::test]
async fn control_routes_drive_the_mock_over_http() {
    let m = mock().await;
    let a = adapter(&m);
    let http = reqwest::Client::new();
    let base = m.base_url();
    let t = Attempt::new("ctl@example.com", "2.50", Currency::Usd);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    let r = http
        .post(format!("{base}/__mock/advance"))
        .json(&serde_json::json!({"provider_ref": batch, "status": "BLOCKED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let truth: Vec<payouts::sim::kit::MovedMoney> = http
        .get(format!("{base}/__mock/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth.len(), 1);
    assert_eq!(truth[0].state, RailState::Failed);
    assert_eq!(a.status(&batch).await.unwrap().state, RailState::Failed);
    let r = http
        .post(format!("{base}/__mock/faults"))
        .json(&serde_json::json!({"rate_limit_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let again = Attempt::new("ctl@example.com", "2.50", Currency::Usd);
    assert!(matches!(
        a.submit(&again.sub(), &NoCheckpoints).await,
        SendDecision::Throttled { .. }
    ));
    let r = http
        .post(format!("{base}/__mock/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    a.status(&batch).await.unwrap();
    assert_eq!(m.token_requests(), 2);
    m.stop();
}

#[tokio::test]
async fn out_of_order_deliveries_all_verify() {
    let m = mock_with(MockPaypalConfig {
        out_of_order_webhooks: true,
        ..Default::default()
    })
    .await;
    m.outbox().set_target(Some(sink().await));
    let a = adapter(&m);
    let t = Attempt::new("reverse-9@example.com", "1.00", Currency::Usd);
    let (batch, _) = landed(a.submit(&t.sub(), &NoCheckpoints).await);
    wait_state(&a, &batch, RailState::Returned, "REVERSED").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while m.outbox().deliveries().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "deliveries missing");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut states = Vec::new();
    for d in m.outbox().deliveries() {
        let e = a
            .verify_webhook(&header_map(&d.headers), &d.body)
            .await
            .unwrap();
        if let Some(o) = e.observation {
            states.push(o.state);
        }
    }
    assert!(states.contains(&RailState::Paid) && states.contains(&RailState::Returned));
    m.stop();
}
