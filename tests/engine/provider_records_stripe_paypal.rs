//! The providers' own records of money moved, for Stripe and PayPal: listed through the real
//! adapters against the mocks on loopback, and read back from the mocks' statement exports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

use payouts::domain::ids::{PayoutId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{LookupFinding, SendDecision, attempt_key};
use payouts::domain::reconcile::{ProviderRecord, RecordKind};
use payouts::domain::tracking::RailState;
use payouts::providers::TransferRequest;
use payouts::providers::paypal::{PaypalAdapter, PaypalConfig};
use payouts::providers::rail::{NoCheckpoints, PayoutRail, Submission};
use payouts::providers::records::{RecordSource, read_statement};
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::sim::paypal::{MockPaypal, MockPaypalConfig};
use payouts::sim::stripe::{MockConfig, MockStripe};

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Every page of a listing, in order.
async fn pages(
    source: &dyn RecordSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Vec<ProviderRecord>> {
    source
        .record_pages(from, to)
        .try_collect()
        .await
        .expect("listing")
}

fn by_id(records: impl IntoIterator<Item = ProviderRecord>) -> BTreeMap<String, ProviderRecord> {
    let mut map = BTreeMap::new();
    for r in records {
        let id = r.record_id.clone();
        assert!(map.insert(id.clone(), r).is_none(), "{id} listed twice");
    }
    map
}

/// A statement export read back in batches of `batch` records.
fn read_csv(rail: Rail, csv: &[u8], batch: usize) -> Vec<ProviderRecord> {
    let mut all = Vec::new();
    let total = read_statement(rail, csv, batch, |b| {
        assert!(b.len() <= batch);
        all.extend(b);
        Ok(())
    })
    .expect("statement reads");
    assert_eq!(total as usize, all.len());
    all
}

// ---------------------------------------------------------------- Stripe

struct Stripe {
    mock: MockStripe,
    adapter: StripeAdapter,
    http: reqwest::Client,
}

async fn stripe() -> Stripe {
    let mock = MockStripe::start(any_addr(), MockConfig::default())
        .await
        .expect("mock");
    let adapter = StripeAdapter::new(StripeConfig {
        api_base: mock.base_url(),
        secret_key: SecretString::from("sk_test_mock"),
        timeout: Duration::from_secs(5),
        list_lag: payouts::providers::stripe::SETTLE.list_lag,
        webhook_secrets: Vec::new(),
    })
    .expect("adapter");
    Stripe {
        mock,
        adapter,
        http: reqwest::Client::new(),
    }
}

impl Stripe {
    /// One transfer through the adapter: returns (tr_ id, payout id).
    async fn pay(&self, dest: &str, minor: i64, currency: Currency) -> (String, PayoutId) {
        let payout = PayoutId::from_ulid(payouts::clock::ulid());
        let key = attempt_key(&payout, 1);
        let decision = self
            .adapter
            .send(&TransferRequest {
                payout_id: &payout,
                destination: dest,
                amount: Money::from_minor_units(minor, currency),
                idempotency_key: &key,
            })
            .await;
        match decision {
            SendDecision::Landed { provider_ref, .. } => (provider_ref, payout),
            other => panic!("transfer not landed: {other:?}"),
        }
    }

    async fn statement(&self, query: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!(
                "{}/__mock/statement.csv?{query}",
                self.mock.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        r.bytes().await.unwrap().to_vec()
    }
}

fn day_of(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test]
async fn stripe_listing_pages_every_transfer_and_bank_payout_exactly_once() {
    let s = stripe().await;
    // 60 transfers "yesterday", 70 today: more than one page of 100.
    s.mock.set_clock_offset(-86_400);
    let mut made = BTreeMap::new();
    for i in 0..60 {
        let (id, payout) = s.pay(&format!("acct_y{i}"), 100 + i, Currency::Usd).await;
        made.insert(id, payout);
    }
    s.mock.set_clock_offset(0);
    for i in 0..70 {
        let (id, payout) = s.pay(&format!("acct_t{i}"), 1_000 + i, Currency::Jpy).await;
        made.insert(id, payout);
    }
    // A platform bank payout: listed after the transfers, never a referral payout.
    let po: Value = s
        .http
        .post(format!("{}/v1/payouts", s.mock.base_url()))
        .bearer_auth("sk_test_mock")
        .form(&[("amount", "50000"), ("currency", "usd")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let po_id = po["id"].as_str().unwrap().to_string();
    assert_eq!(po["status"], "pending");

    let now = Utc::now();
    let all = pages(
        &s.adapter,
        now - chrono::Duration::days(2),
        now + chrono::Duration::minutes(1),
    )
    .await;
    let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        vec![100, 30, 1],
        "one Vec per HTTP page, transfers then payouts"
    );

    let records = by_id(all.into_iter().flatten());
    assert_eq!(records.len(), 131);
    let truth: BTreeMap<String, _> = s
        .mock
        .transfers()
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();
    for (id, payout) in &made {
        let r = &records[id];
        let t = &truth[id];
        assert_eq!(r.rail, Rail::Stripe);
        assert_eq!(r.kind, RecordKind::Transfer);
        assert_eq!(r.reference.as_deref(), Some(payout.as_str()));
        assert_eq!(r.payout_hint.as_deref(), Some(payout.as_str()));
        assert_eq!(r.group_id, None);
        assert_eq!(r.payee, t.destination);
        let currency: Currency = t.currency.parse().unwrap();
        assert_eq!(r.amount, Money::from_minor_units(t.amount, currency));
        assert_eq!(
            (r.state, r.provider_status.as_str()),
            (RailState::Paid, "transferred")
        );
        assert_eq!(r.created_at.timestamp(), t.created);
    }
    let bank = &records[&po_id];
    assert_eq!(bank.kind, RecordKind::BankPayout);
    assert_eq!(bank.payee, "ba_mock_platform");
    assert_eq!(bank.amount, Money::from_minor_units(50_000, Currency::Usd));
    assert!(!bank.kind.is_payee_money());

    // Yesterday only: exactly the 60 made with the clock a day back.
    let yesterday = by_id(
        pages(
            &s.adapter,
            now - chrono::Duration::days(2),
            now - chrono::Duration::hours(12),
        )
        .await
        .into_iter()
        .flatten(),
    );
    assert_eq!(yesterday.len(), 60);
    assert!(yesterday.values().all(|r| r.payee.starts_with("acct_y")));
    // An empty window lists nothing, and an inverted one too.
    assert!(
        pages(
            &s.adapter,
            now - chrono::Duration::days(9),
            now - chrono::Duration::days(8)
        )
        .await
        .is_empty()
    );
    assert!(
        pages(&s.adapter, now, now - chrono::Duration::days(1))
            .await
            .is_empty()
    );

    // The bank payout settles: pending → paid.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = by_id(
        pages(
            &s.adapter,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::minutes(1),
        )
        .await
        .into_iter()
        .flatten(),
    );
    assert_eq!(
        (later[&po_id].state, later[&po_id].provider_status.as_str()),
        (RailState::Paid, "paid")
    );
    s.mock.stop();
}

#[tokio::test]
async fn stripe_mock_lists_honour_every_created_filter_and_cursor() {
    let s = stripe().await;
    s.mock.set_clock_offset(-300);
    let (old, _) = s.pay("acct_old", 100, Currency::Usd).await;
    s.mock.set_clock_offset(0);
    let (new, _) = s.pay("acct_new", 200, Currency::Usd).await;
    let created: BTreeMap<String, i64> = s
        .mock
        .transfers()
        .into_iter()
        .map(|t| (t.id, t.created))
        .collect();
    let (c_old, c_new) = (created[&old], created[&new]);
    let ids = |query: String| {
        let http = s.http.clone();
        let url = format!("{}/v1/transfers?{query}", s.mock.base_url());
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth("sk_test_mock")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let ids: Vec<String> = body["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect();
            (ids, body["has_more"].as_bool().unwrap())
        }
    };
    assert_eq!(
        ids(format!("created[gt]={c_old}")).await.0,
        vec![new.clone()]
    );
    assert_eq!(
        ids(format!("created[gte]={c_old}")).await.0,
        vec![new.clone(), old.clone()]
    );
    assert_eq!(
        ids(format!("created[lt]={c_new}")).await.0,
        vec![old.clone()]
    );
    assert_eq!(
        ids(format!("created[lte]={c_old}")).await.0,
        vec![old.clone()]
    );
    assert_eq!(ids(format!("created={c_new}")).await.0, vec![new.clone()]);
    assert_eq!(ids("limit=1".into()).await, (vec![new.clone()], true));
    assert_eq!(
        ids(format!("limit=1&starting_after={new}")).await,
        (vec![old.clone()], false)
    );
    assert_eq!(
        ids(format!("limit=1&ending_before={old}")).await,
        (vec![new.clone()], false)
    );
    // Out-of-range limits are refused like Stripe does.
    let refused = s
        .http
        .get(format!("{}/v1/transfers?limit=101", s.mock.base_url()))
        .bearer_auth("sk_test_mock")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    s.mock.stop();
}

#[tokio::test]
async fn stripe_statement_reads_back_as_the_api_listing() {
    let s = stripe().await;
    s.mock.set_clock_offset(-86_400);
    for i in 0..5 {
        s.pay(&format!("acct_y{i}"), 1_250 + i, Currency::Eur).await;
    }
    s.mock.set_clock_offset(0);
    let mut today = Vec::new();
    for i in 0..7 {
        today.push(s.pay(&format!("acct_t{i}"), 99 + i, Currency::Usd).await.0);
    }
    assert!(s.mock.reverse(&today[0]));

    let transfers = s.mock.transfers();
    let first = transfers.iter().map(|t| t.created).min().unwrap();
    let last = transfers.iter().map(|t| t.created).max().unwrap();
    let (d0, d1) = (day_of(first), day_of(last));
    let csv = s.statement(&format!("from={d0}&to={d1}")).await;
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(
        text.starts_with(
            "id,Created (UTC),Amount,Currency,Destination,Transfer Group,Description,Amount Reversed,Reversed,payout_id (metadata)\n"
        ),
        "{text}"
    );
    assert!(text.contains(",12.50,eur,acct_y0,"), "{text}");
    let from_csv = by_id(read_csv(Rail::Stripe, &csv, 4));

    let day_start = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    let api = by_id(
        pages(
            &s.adapter,
            day_start(&d0),
            day_start(&d1) + chrono::Duration::days(1),
        )
        .await
        .into_iter()
        .flatten()
        .filter(|r| r.kind == RecordKind::Transfer),
    );
    assert_eq!(api.len(), 12);
    assert_eq!(from_csv, api, "the export and the API say the same");
    assert_eq!(from_csv[&today[0]].state, RailState::Returned);
    assert_eq!(from_csv[&today[0]].provider_status, "reversed");

    // One day only: the transfers created that day.
    let only_first_day = by_id(read_csv(
        Rail::Stripe,
        &s.statement(&format!("from={d0}&to={d0}")).await,
        100,
    ));
    let expected: BTreeSet<String> = transfers
        .iter()
        .filter(|t| day_of(t.created) == d0)
        .map(|t| t.id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        only_first_day.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    // No bounds: everything.
    assert_eq!(
        read_csv(Rail::Stripe, &s.statement("").await, 100).len(),
        12
    );
    let bad = s
        .http
        .get(format!(
            "{}/__mock/statement.csv?from=yesterday",
            s.mock.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    s.mock.stop();
}

#[tokio::test]
async fn stripe_tampered_and_forgotten_transfers_change_what_is_listed() {
    let s = stripe().await;
    let (a, pa) = s.pay("acct_a", 1_000, Currency::Usd).await;
    let (b, pb) = s.pay("acct_b", 2_000, Currency::Usd).await;
    let (c, _) = s.pay("acct_c", 3_000, Currency::Usd).await;
    let deliveries_before = s.mock.outbox().deliveries().len();

    let tampered = s
        .http
        .post(format!("{}/__mock/tamper", s.mock.base_url()))
        .json(&json!({"id": a, "amount": 999, "currency": "eur", "destination": "acct_thief"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 200);
    let body: Value = tampered.json().await.unwrap();
    assert_eq!(
        (body["amount"].as_i64(), body["currency"].as_str()),
        (Some(999), Some("eur"))
    );
    let forgotten = s
        .http
        .delete(format!("{}/__mock/transfers/{b}", s.mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(forgotten.status(), 204);
    // Unknown ids are 404s; a bad body is a 400.
    for (status, response) in [
        (
            404,
            s.http
                .post(format!("{}/__mock/tamper", s.mock.base_url()))
                .json(&json!({"id": "tr_nope", "amount": 1}))
                .send()
                .await
                .unwrap(),
        ),
        (
            404,
            s.http
                .delete(format!("{}/__mock/transfers/{b}", s.mock.base_url()))
                .send()
                .await
                .unwrap(),
        ),
        (
            400,
            s.http
                .post(format!("{}/__mock/tamper", s.mock.base_url()))
                .json(&json!({"id": c, "colour": "red"}))
                .send()
                .await
                .unwrap(),
        ),
    ] {
        assert_eq!(response.status(), status);
    }
    // Silently: no webhook went out.
    assert_eq!(s.mock.outbox().deliveries().len(), deliveries_before);

    let now = Utc::now();
    let listed = by_id(
        pages(
            &s.adapter,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::minutes(1),
        )
        .await
        .into_iter()
        .flatten(),
    );
    assert_eq!(listed.keys().cloned().collect::<Vec<_>>(), {
        let mut v = vec![a.clone(), c.clone()];
        v.sort();
        v
    });
    let ra = &listed[&a];
    assert_eq!(ra.amount, Money::parse("9.99", Currency::Eur, 2).unwrap());
    assert_eq!(ra.payee, "acct_thief");
    assert_eq!(
        ra.reference.as_deref(),
        Some(pa.as_str()),
        "our reference is untouched"
    );
    assert_eq!(
        listed[&c].amount,
        Money::from_minor_units(3_000, Currency::Usd)
    );
    // The export tells the same story.
    let csv = by_id(read_csv(Rail::Stripe, &s.statement("").await, 10));
    assert_eq!(csv, listed);
    // The lookup by payout no longer finds the forgotten one.
    assert_eq!(s.adapter.lookup(&pb).await.unwrap(), LookupFinding::Absent);
    s.mock.stop();
}

// ---------------------------------------------------------------- PayPal

struct Paypal {
    mock: MockPaypal,
    adapter: PaypalAdapter,
    http: reqwest::Client,
}

async fn paypal() -> Paypal {
    let mock = MockPaypal::start(
        any_addr(),
        MockPaypalConfig {
            process_after_ms: 100,
            // Keep UNCLAIMED and SUCCESS items where they are while a test compares reads.
            unclaimed_return_after_ms: 600_000,
            late_after_ms: 600_000,
            tick_ms: 20,
            ..MockPaypalConfig::default()
        },
    )
    .await
    .expect("mock");
    let mut config = PaypalConfig::new(
        mock.base_url(),
        "mock-client-id",
        SecretString::from("mock-client-secret"),
        mock.webhook_id(),
    );
    config.timeout = Duration::from_secs(10);
    Paypal {
        adapter: PaypalAdapter::new(config).expect("adapter"),
        mock,
        http: reqwest::Client::new(),
    }
}

impl Paypal {
    async fn token(&self) -> String {
        let t: Value = self
            .http
            .post(format!("{}/v1/oauth2/token", self.mock.base_url()))
            .basic_auth("mock-client-id", Some("mock-client-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        t["access_token"].as_str().unwrap().to_string()
    }

    /// A batch created directly with the real create call: (receiver, value, currency,
    /// sender_item_id) per item. Returns the payout_batch_id.
    async fn batch(
        &self,
        token: &str,
        sender_batch_id: &str,
        items: &[(&str, &str, &str, &str)],
    ) -> String {
        let items: Vec<Value> = items
            .iter()
            .map(|(receiver, value, currency, sender_item_id)| {
                json!({
                    "recipient_type": "EMAIL",
                    "receiver": receiver,
                    "amount": {"value": value, "currency": currency},
                    "sender_item_id": sender_item_id,
                })
            })
            .collect();
        let r = self
            .http
            .post(format!("{}/v1/payments/payouts", self.mock.base_url()))
            .bearer_auth(token)
            .json(&json!({
                "sender_batch_header": {"sender_batch_id": sender_batch_id, "email_subject": "x"},
                "items": items,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["batch_header"]["payout_batch_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until no item is PENDING any more, as the listing sees it.
    async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = Utc::now();
            let window = (
                now - chrono::Duration::hours(1),
                now + chrono::Duration::hours(1),
            );
            let pending = pages(&self.adapter, window.0, window.1)
                .await
                .into_iter()
                .flatten()
                .any(|r| r.provider_status == "PENDING");
            if !pending {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "items stay PENDING");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn statement(&self, query: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!(
                "{}/__mock/statement.csv?{query}",
                self.mock.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }
}

#[tokio::test]
async fn paypal_multi_item_batch_is_listed_item_by_item_under_one_group() {
    let p = paypal().await;
    let token = p.token().await;
    let batch = p
        .batch(
            &token,
            "attempt-multi-1",
            &[
                ("Alice@Example.test", "12.50", "USD", "payout-a"),
                ("unclaimed-bob@example.test", "3.00", "USD", "payout-b"),
                ("carol@example.test", "1230", "JPY", "payout-c"),
            ],
        )
        .await;
    // And one single-item batch the way the rail sends it.
    let payout = PayoutId::from_ulid(payouts::clock::ulid());
    let key = attempt_key(&payout, 1);
    let single = match p
        .adapter
        .submit(
            &Submission {
                payout_id: &payout,
                attempt: 1,
                destination: "dave@example.test",
                amount: Money::parse("7.05", Currency::Eur, 2).unwrap(),
                idempotency_key: &key,
                checkpoint: None,
                left_by: None,
            },
            &NoCheckpoints,
        )
        .await
    {
        SendDecision::Landed { provider_ref, .. } => provider_ref,
        other => panic!("{other:?}"),
    };
    p.settle().await;

    let now = Utc::now();
    let all = pages(
        &p.adapter,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(all.len(), 2, "one page per batch page");
    let records = by_id(all.into_iter().flatten());
    assert_eq!(records.len(), 4);
    let of_batch: Vec<&ProviderRecord> = records
        .values()
        .filter(|r| r.group_id.as_deref() == Some(batch.as_str()))
        .collect();
    assert_eq!(of_batch.len(), 3);
    let hint = |h: &str| {
        *of_batch
            .iter()
            .find(|r| r.payout_hint.as_deref() == Some(h))
            .unwrap_or_else(|| panic!("no item for {h}"))
    };
    let a = hint("payout-a");
    assert_eq!(
        (a.rail, a.kind, a.reference.as_deref(), a.payee.as_str()),
        (
            Rail::Paypal,
            RecordKind::BatchItem,
            Some("attempt-multi-1"),
            "alice@example.test"
        )
    );
    assert_eq!(a.amount, Money::parse("12.50", Currency::Usd, 2).unwrap());
    assert_eq!(
        (a.state, a.provider_status.as_str()),
        (RailState::Paid, "SUCCESS")
    );
    let b = hint("payout-b");
    assert_eq!(
        (b.state, b.provider_status.as_str()),
        (RailState::InFlight, "UNCLAIMED")
    );
    let c = hint("payout-c");
    assert_eq!(c.amount, Money::from_minor_units(1230, Currency::Jpy));
    assert!(
        of_batch
            .iter()
            .all(|r| r.created_at >= now - chrono::Duration::minutes(1))
    );

    let d = records
        .values()
        .find(|r| r.group_id.as_deref() == Some(single.as_str()))
        .unwrap();
    assert_eq!(d.reference.as_deref(), Some(key.as_str()));
    assert_eq!(d.payout_hint.as_deref(), Some(payout.as_str()));
    assert_eq!(d.amount, Money::parse("7.05", Currency::Eur, 2).unwrap());

    // The payouts report says the same, item by item.
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let (d0, d1) = (
        day(now - chrono::Duration::days(1)),
        day(now + chrono::Duration::days(1)),
    );
    let csv = p.statement(&format!("from={d0}&to={d1}")).await;
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(
        text.starts_with(
            "Payout Batch ID,Sender Batch ID,Payout Item ID,Transaction ID,Sender Item ID,Recipient,Amount,Currency,Fee,Status,Date (UTC)\n"
        ),
        "{text}"
    );
    assert_eq!(by_id(read_csv(Rail::Paypal, &csv, 2)), records);
    // Other days hold nothing.
    assert!(
        read_csv(
            Rail::Paypal,
            &p.statement("from=2001-01-01&to=2001-01-31").await,
            2
        )
        .is_empty()
    );
    // A window in the past finds nothing; a window wider than the search's 31 days is split.
    assert!(
        pages(
            &p.adapter,
            now - chrono::Duration::hours(5),
            now - chrono::Duration::hours(2)
        )
        .await
        .is_empty()
    );
    let wide = pages(
        &p.adapter,
        now - chrono::Duration::days(75),
        now + chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(by_id(wide.into_iter().flatten()), records);
    p.mock.stop();
}

#[tokio::test]
async fn paypal_search_pages_and_batch_item_pages_are_followed_to_the_end() {
    let p = paypal().await;
    let token = p.token().await;
    // One batch of 1001 items (two pages of at most 1000) ...
    let owned: Vec<(String, String)> = (0..1001)
        .map(|i| (format!("big{i}@example.test"), format!("big-{i}")))
        .collect();
    let items: Vec<(&str, &str, &str, &str)> = owned
        .iter()
        .map(|(r, h)| (r.as_str(), "1.00", "USD", h.as_str()))
        .collect();
    let big = p.batch(&token, "attempt-big", &items).await;
    // ... and 500 more batches: 501 search rows, two pages of at most 500.
    for i in 0..500 {
        let receiver = format!("small{i}@example.test");
        let hint = format!("small-{i}");
        p.batch(
            &token,
            &format!("attempt-small-{i}"),
            &[(&receiver, "2.00", "USD", &hint)],
        )
        .await;
    }
    let now = Utc::now();
    let search: Value = p
        .http
        .get(format!(
            "{}/v1/reporting/transactions?start_date={}&end_date={}&page_size=500&page=2",
            p.mock.base_url(),
            (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            search["total_items"].as_u64(),
            search["total_pages"].as_u64()
        ),
        (Some(501), Some(2))
    );
    assert_eq!(search["transaction_details"].as_array().unwrap().len(), 1);
    let row = &search["transaction_details"][0]["transaction_info"];
    assert_eq!(row["transaction_event_code"], "T0001");
    assert_eq!(row["transaction_amount"]["value"], "-2.00");
    // The search needs a token like every other call.
    let anonymous = p
        .http
        .get(format!(
            "{}/v1/reporting/transactions?start_date=x&end_date=y",
            p.mock.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let all = pages(
        &p.adapter,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(
        all.len(),
        502,
        "two pages for the big batch, one per small batch"
    );
    assert!(all.iter().all(|page| page.len() <= 1000));
    let big_pages: Vec<usize> = all
        .iter()
        .filter(|page| page[0].group_id.as_deref() == Some(big.as_str()))
        .map(Vec::len)
        .collect();
    assert_eq!(big_pages, vec![1000, 1]);
    let records = by_id(all.into_iter().flatten());
    assert_eq!(records.len(), 1501);
    let hints: BTreeSet<&str> = records
        .values()
        .filter_map(|r| r.payout_hint.as_deref())
        .collect();
    assert_eq!(hints.len(), 1501);
    assert!(hints.contains("big-1000") && hints.contains("small-499"));
    p.mock.stop();
}
