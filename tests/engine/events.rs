//! Outgoing events end to end: a receiver on a loopback port gets every event type, signed
//! with its endpoint's secret, in order per payout; a receiver that fails for a while gets
//! them all, still in order, once it answers (the retry clock is injected: no sleeps); an
//! operator's replay sends an event again under the same id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::common::{DEMO, TestEnv, usd};
use payouts::domain::events::{EndpointUrl, EventType, verify};
use payouts::domain::ids::Rail;
use payouts::domain::payout::PayoutStatus;
use payouts::jobs::{EventSender, PayoutDeps};
use payouts::providers::rail::Rails;
use payouts::sim::stripe::Faults;
use payouts::storage::ReplaySelector;

/// One POST: its `Payouts-Signature` header and its raw body.
type Delivered = (String, Vec<u8>);

/// What a receiver got: the signature header and the raw body of each POST, in order.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivered>>>,
    /// Requests to answer 500 before answering 200.
    fail_first: Arc<AtomicU32>,
    answered: Arc<AtomicU32>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = r.answered.fetch_add(1, Ordering::SeqCst);
    if n < r.fail_first.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let signature = headers
        .get("Payouts-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    r.got.lock().unwrap().push((signature, body.to_vec()));
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(fail_first: u32) -> (Receiver, EndpointUrl) {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (
            r,
            EndpointUrl::parse(&format!("http://{addr}/events")).unwrap(),
        )
    }

    /// Every body received, checked against `secret` at the time the header names, parsed.
    fn events(&self, secret: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(header, body)| {
                let t: i64 = header
                    .split(',')
                    .find_map(|p| p.strip_prefix("t="))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("no t= in {header:?}"));
                verify(header, secret.as_bytes(), body, t, Duration::from_secs(300))
                    .unwrap_or_else(|e| panic!("signature {header:?}: {e}"));
                assert!(
                    verify(header, b"another secret", body, t, Duration::from_secs(300)).is_err()
                );
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }
}

/// The subject an event is about: the payout's id, else the account or the exception.
fn subject(event: &Value) -> String {
    let data = &event["data"];
    [
        &data["payout"]["id"],
        &data["account"],
        &data["exception"]["id"],
    ]
    .into_iter()
    .find_map(|v| v.as_str())
    .unwrap_or_default()
    .to_string()
}

/// Types received per subject, in arrival order.
fn per_subject(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        by.entry(subject(e))
            .or_default()
            .push(e["type"].as_str().unwrap().to_string());
    }
    by
}

async fn status(env: &TestEnv, id: &str) -> PayoutStatus {
    env.store.payout(id).await.unwrap().payout.status
}

#[tokio::test]
async fn a_receiver_gets_every_event_type_signed_and_in_order_per_payout() {
    let env = TestEnv::new(Faults::default()).await;
    let (receiver, url) = Receiver::start(0).await;
    let endpoint = env
        .store
        .add_event_endpoint(&url, &[], "ops-ana")
        .await
        .unwrap();
    let secret = endpoint.secret.expose_secret().to_string();
    let sender = EventSender::new(env.store.clone()).unwrap();
    env.ingest(DEMO).await;

    // created, processing, paid; then returned when Stripe reverses the transfer.
    let alice = env
        .withdraw("ref-alice", usd("10"), "a-1")
        .await
        .unwrap()
        .payout
        .id;
    env.pay_then_reverse(alice.as_str()).await;
    // failed: Stripe refuses the key for good.
    let nia = env
        .withdraw("ref-nia", usd("5"), "n-1")
        .await
        .unwrap()
        .payout
        .id;
    env.work_until_idle(env.deps_with("sk_test_wrong", crate::common::fast_policy(), "bad"))
        .await;
    assert_eq!(status(&env, nia.as_str()).await, PayoutStatus::Failed);
    // needs_operator: no worker here can send on Stripe.
    let mo = env
        .withdraw("ref-mo", usd("5"), "m-1")
        .await
        .unwrap()
        .payout
        .id;
    let no_rails = Arc::new(PayoutDeps {
        rails: Rails::default(),
        ..(*env.deps()).clone()
    });
    env.work_until_idle(no_rails).await;
    assert_eq!(status(&env, mo.as_str()).await, PayoutStatus::NeedsOperator);
    // held: the rail is paused when the payout's step comes.
    env.store
        .pause_rail(Rail::Stripe, "bank holiday", "ops-ana")
        .await
        .unwrap();
    let oli = env
        .withdraw("ref-oli", usd("5"), "o-1")
        .await
        .unwrap()
        .payout
        .id;
    payouts::jobs::advance_payout(&env.deps(), &oli)
        .await
        .unwrap();
    // reconciliation.exception: a transfer nobody asked for.
    env.mock
        .inject_transfer("po_nobody", "acct_1Stray", 1234, "usd");
    assert!(!env.reconcile_today(vec![Rail::Stripe]).await.is_empty());

    sender.drain(Utc::now()).await.unwrap();
    let events = receiver.events(&secret);
    let types: BTreeSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let all: BTreeSet<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
    assert_eq!(types, all, "every type arrives");
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "each event once");

    let by = per_subject(&events);
    let seq = |id: &str| by[id].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(
        seq(alice.as_str()),
        [
            "payout.created",
            "payout.processing",
            "payout.paid",
            "payout.returned"
        ]
    );
    assert_eq!(
        seq(nia.as_str()),
        ["payout.created", "payout.processing", "payout.failed"]
    );
    assert_eq!(
        seq(mo.as_str()),
        ["payout.created", "payout.needs_operator"]
    );
    assert_eq!(seq(oli.as_str()), ["payout.created", "payout.held"]);
    assert!(seq("ref-alice").contains(&"balance.payable"));

    // What the platform shows its payees: the provider's reason and what to do.
    let failed = events
        .iter()
        .find(|e| e["type"] == "payout.failed")
        .unwrap();
    assert!(
        failed["data"]["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("401")
    );
    assert_eq!(failed["data"]["failure"]["payee_action"], "contact_support");
    let held = events.iter().find(|e| e["type"] == "payout.held").unwrap();
    assert_eq!(held["data"]["held"]["for"], "rail_paused");
    assert_eq!(held["data"]["payout"]["amount"]["amount"], "5");
}

#[tokio::test]
async fn a_failing_receiver_gets_every_event_in_order_once_it_answers_and_a_replay_resends() {
    let env = TestEnv::new(Faults::default()).await;
    let (receiver, url) = Receiver::start(4).await;
    let endpoint = env
        .store
        .add_event_endpoint(
            &url,
            &[EventType::PayoutCreated, EventType::BalancePayable],
            "ops",
        )
        .await
        .unwrap();
    let secret = endpoint.secret.expose_secret().to_string();
    let sender = EventSender::new(env.store.clone()).unwrap();
    env.ingest(DEMO).await;
    while env.store.check_balances(100).await.unwrap() > 0 {}
    let first = env
        .withdraw("ref-alice", usd("10"), "a-1")
        .await
        .unwrap()
        .payout
        .id;
    let second = env
        .withdraw("ref-alice", usd("5"), "a-2")
        .await
        .unwrap()
        .payout
        .id;

    // The clock is ours: each pass runs at a time we choose, so the backoff passes at once.
    let mut now = Utc::now();
    let mut passes = 0;
    while env
        .store
        .deliveries_due(now + chrono::Duration::days(4))
        .await
        .unwrap()
        > 0
    {
        let pass = sender.deliver_due(now).await.unwrap();
        assert_eq!(pass.gave_up, 0);
        now += chrono::Duration::minutes(10);
        passes += 1;
        assert!(passes < 100, "deliveries never finished");
    }
    assert!(
        receiver.answered.load(Ordering::SeqCst) > 4,
        "it failed for a while"
    );
    let logged = env
        .store
        .events_since(Utc::now() - chrono::Duration::hours(1), 1000)
        .await
        .unwrap();
    let tries: Vec<Option<u16>> = logged
        .iter()
        .flat_map(|e| &e.deliveries)
        .flat_map(|d| d.attempts.iter().map(|t| t.http_status))
        .collect();
    assert_eq!(
        tries.iter().filter(|s| **s == Some(500)).count(),
        4,
        "{tries:?}"
    );
    assert!(
        logged
            .iter()
            .flat_map(|e| &e.deliveries)
            .all(|d| d.state == "delivered")
    );

    let events = receiver.events(&secret);
    let by = per_subject(&events);
    assert_eq!(by[first.as_str()], ["payout.created"]);
    assert_eq!(by[second.as_str()], ["payout.created"]);
    assert_eq!(
        by["ref-alice"],
        ["balance.payable"],
        "once, though alice stays payable"
    );
    assert!(
        events.iter().all(|e| e["type"] != "payout.processing"),
        "types filter"
    );

    // The log shows every try: 500s first for the events that went out first.
    let created = events
        .iter()
        .find(|e| subject(e) == first.as_str())
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let logged = env.store.event(id).await.unwrap().unwrap();
    assert_eq!(logged.deliveries.len(), 1);
    let delivery = &logged.deliveries[0];
    assert_eq!(delivery.state, "delivered");
    assert_eq!(delivery.attempts.last().unwrap().http_status, Some(204));
    assert_eq!(delivery.tries as usize, delivery.attempts.len());

    // An operator replays it: the same id and body again, logged as a second delivery.
    let made = env
        .store
        .replay_events(&ReplaySelector::One(id.to_string()), None, "ops-ana")
        .await
        .unwrap();
    assert_eq!(made, 1);
    sender.drain(now).await.unwrap();
    let again = receiver.events(&secret);
    assert_eq!(again.len(), events.len() + 1);
    assert_eq!(again.last().unwrap()["id"], id);
    let logged = env.store.event(id).await.unwrap().unwrap();
    assert_eq!(logged.deliveries.len(), 2);
    assert_eq!(logged.deliveries[1].replayed_by.as_deref(), Some("ops-ana"));
    assert!(matches!(
        env.store
            .replay_events(&ReplaySelector::One("evt_nope".into()), None, "ops")
            .await,
        Err(payouts::storage::StoreError::UnknownEvent(_))
    ));
}

#[tokio::test]
async fn a_receiver_down_for_three_days_is_given_up_on_and_the_next_event_goes() {
    let env = TestEnv::new(Faults::default()).await;
    let (receiver, url) = Receiver::start(u32::MAX).await;
    env.store
        .add_event_endpoint(
            &url,
            &[EventType::PayoutCreated, EventType::PayoutHeld],
            "ops",
        )
        .await
        .unwrap();
    let sender = EventSender::new(env.store.clone()).unwrap();
    env.ingest(DEMO).await;
    env.store
        .pause_rail(Rail::Stripe, "bank holiday", "ops")
        .await
        .unwrap();
    let id = env
        .withdraw("ref-alice", usd("10"), "a-1")
        .await
        .unwrap()
        .payout
        .id;

    let start = Utc::now();
    let mut now = start;
    let mut tries = 0;
    while now < start + chrono::Duration::days(4) {
        let pass = sender.deliver_due(now).await.unwrap();
        tries += pass.failed + pass.gave_up;
        if pass.gave_up > 0 {
            break;
        }
        now += chrono::Duration::minutes(30);
    }
    assert!(
        now >= start + chrono::Duration::hours(60),
        "given up only after days: {now}"
    );
    assert!((10..=40).contains(&tries), "{tries} tries over three days");
    // The receiver is back: the payout's next event is not held back by the one given up.
    receiver.fail_first.store(0, Ordering::SeqCst);
    payouts::jobs::advance_payout(&env.deps(), &id)
        .await
        .unwrap();
    sender.drain(now).await.unwrap();
    let got = receiver.got.lock().unwrap().len();
    assert_eq!(
        got, 1,
        "the held event arrives; the created one was given up"
    );
    let given_up: i64 = crate::common::scalar(
        &env.store,
        "SELECT COUNT(*) FROM event_deliveries WHERE state = 'gave_up'",
    )
    .await;
    assert_eq!(given_up, 1);
}

#[tokio::test]
async fn balance_payable_is_news_once_and_again_when_money_comes_back() {
    let env = TestEnv::new(Faults::default()).await;
    let (receiver, url) = Receiver::start(0).await;
    let endpoint = env
        .store
        .add_event_endpoint(&url, &[EventType::BalancePayable], "ops")
        .await
        .unwrap();
    let secret = endpoint.secret.expose_secret().to_string();
    let sender = EventSender::new(env.store.clone()).unwrap();
    let payable_events = |r: &Receiver| {
        r.events(&secret)
            .iter()
            .filter(|e| subject(e) == "ref-nia")
            .count()
    };
    env.ingest(DEMO).await;
    sender.drain(Utc::now()).await.unwrap();
    assert_eq!(payable_events(&receiver), 1);
    // The same records again post nothing new: nothing to say.
    env.ingest(DEMO).await;
    sender.drain(Utc::now()).await.unwrap();
    assert_eq!(payable_events(&receiver), 1);
    // Everything withdrawn, then refused for good: the money is back, and so is the news.
    let all = env.payable("ref-nia").await;
    let id = env
        .withdraw("ref-nia", all, "n-all")
        .await
        .unwrap()
        .payout
        .id;
    env.work_until_idle(env.deps_with("sk_test_wrong", crate::common::fast_policy(), "bad"))
        .await;
    assert_eq!(status(&env, id.as_str()).await, PayoutStatus::Failed);
    sender.drain(Utc::now()).await.unwrap();
    assert_eq!(payable_events(&receiver), 2);
    let last = receiver.events(&secret).pop().unwrap();
    assert_eq!(
        last["data"]["payable_now"]["amount"],
        all.amount().to_string()
    );
}
