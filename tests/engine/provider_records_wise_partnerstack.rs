//! The providers' own records of money moved, for Wise and PartnerStack, over real HTTP on
//! loopback: payouts go out through the adapters' normal submit path to the mocks, then
//! `RecordSource::record_pages` reads them back page by page (several pages at the adapters'
//! real page sizes: 100 transfers, 250 rewards), the mocks' statement exports parse back
//! through `read_statement` to the same records, and silent tampering / forgetting at the
//! provider shows in both.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use payouts::domain::ids::{PayoutId, Rail};
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{SendDecision, attempt_key};
use payouts::domain::reconcile::{ProviderRecord, RecordKind};
use payouts::domain::tracking::RailState;
use payouts::providers::partnerstack::reward_key;
use payouts::providers::partnerstack::{PartnerstackAdapter, PartnerstackConfig};
use payouts::providers::rail::{NoCheckpoints, PayoutRail, Submission};
use payouts::providers::records::{RecordSource, read_statement};
use payouts::providers::wise::customer_transaction_id;
use payouts::providers::wise::{WiseAdapter, WiseConfig};
use payouts::sim::partnerstack::{MockPartnerstack, MockPartnerstackConfig};
use payouts::sim::wise::{MockWise, MockWiseConfig, RECIPIENT_EUR, RECIPIENT_GBP, RECIPIENT_USD};
use secrecy::SecretString;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One payout we sent, as the test remembers it.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) payout: PayoutId,
    pub(crate) key: String,
    destination: String,
    amount: Money,
    pub(crate) provider_ref: String,
}

impl Sent {
    fn new(payout: &str, destination: &str, amount: Money) -> Self {
        let payout = PayoutId::parse(payout).unwrap();
        Sent {
            key: attempt_key(&payout, 1),
            payout,
            destination: destination.to_string(),
            amount,
            provider_ref: String::new(),
        }
    }

    pub(crate) fn sub(&self) -> Submission<'_> {
        Submission {
            payout_id: &self.payout,
            attempt: 1,
            destination: &self.destination,
            amount: self.amount,
            idempotency_key: &self.key,
            checkpoint: None,
            left_by: None,
        }
    }
}

/// Submits every payout through the rail's normal path, a few at a time.
pub(crate) async fn send_all(rail: &dyn PayoutRail, payouts: Vec<Sent>) -> Vec<Sent> {
    futures::stream::iter(payouts)
        .map(|mut p| async move {
            match rail.submit(&p.sub(), &NoCheckpoints).await {
                SendDecision::Landed { provider_ref, .. } => p.provider_ref = provider_ref,
                other => panic!("{} did not land: {other:?}", p.payout),
            }
            p
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Every page of a listing, failing the test on a provider error.
async fn pages(
    source: &dyn RecordSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Vec<ProviderRecord>> {
    source.record_pages(from, to).try_collect().await.unwrap()
}

/// Records by id, asserting each id appears exactly once.
fn by_id(pages: &[Vec<ProviderRecord>]) -> BTreeMap<String, ProviderRecord> {
    let mut out = BTreeMap::new();
    for r in pages.iter().flatten() {
        let id = r.record_id.clone();
        assert!(
            out.insert(id.clone(), r.clone()).is_none(),
            "{id} listed twice"
        );
    }
    out
}

/// A statement export read back through the rail's format, in batches of 40.
async fn statement(rail: Rail, url: &str) -> BTreeMap<String, ProviderRecord> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = response.bytes().await.unwrap();
    let mut batches = Vec::new();
    let total = read_statement(rail, &body[..], 40, |batch| {
        assert!(batch.len() <= 40);
        batches.push(batch);
        Ok(())
    })
    .unwrap();
    let records = by_id(&batches);
    assert_eq!(records.len() as u64, total);
    records
}

/// A webhook receiver on loopback that counts deliveries.
async fn webhook_sink() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), count)
}

/// Waits until the sink has received `n` webhooks.
async fn wait_for_webhooks(count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {count:?} of {n} webhooks arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

// ---------------------------------------------------------------- Wise

const WISE_TOKEN: &str = "wise_test_token";

/// A mock whose transfers stay `processing` after funding unless a test moves them, so the
/// listing and the statement read the same states.
pub(crate) async fn wise() -> (MockWise, WiseAdapter) {
    let config = MockWiseConfig {
        process_after_ms: 3_600_000,
        late_after_ms: 3_600_000,
        ..MockWiseConfig::default()
    };
    let profile_id = config.profile_id;
    let mock = MockWise::start(loopback(), config).await.unwrap();
    let adapter = WiseAdapter::new(WiseConfig {
        api_base: mock.base_url(),
        api_token: WISE_TOKEN.to_string().into(),
        profile_id,
        timeout: Duration::from_secs(10),
        webhook_public_key_pem: String::new(),
    })
    .unwrap();
    (mock, adapter)
}

/// `n` Wise payouts in USD to the three plain recipients, with distinct amounts.
pub(crate) fn wise_payouts(prefix: &str, n: usize) -> Vec<Sent> {
    let recipients = [RECIPIENT_USD, RECIPIENT_EUR, RECIPIENT_GBP];
    (0..n)
        .map(|i| {
            Sent::new(
                &format!("po_{prefix}{i:04}"),
                &recipients[i % 3].to_string(),
                Money::from_minor_units(100 + i as i64 * 7, Currency::Usd),
            )
        })
        .collect()
}

fn assert_wise_record(r: &ProviderRecord, sent: &Sent) {
    assert_eq!(r.rail, Rail::Wise);
    assert_eq!(r.kind, RecordKind::Transfer);
    assert_eq!(r.record_id, sent.provider_ref);
    assert_eq!(
        r.reference.as_deref(),
        Some(customer_transaction_id(&sent.key).to_string().as_str())
    );
    assert_eq!(r.payout_hint.as_deref(), Some(sent.payout.as_str()));
    assert_eq!(r.group_id, None);
    // The destination exactly as the payout stores it, and the payout's own amount (the
    // source side, even where the recipient is paid in EUR or GBP).
    assert_eq!(r.payee, sent.destination);
    assert_eq!(r.amount, sent.amount);
    assert_eq!(
        (r.state, r.provider_status.as_str()),
        (RailState::InFlight, "processing")
    );
}

#[tokio::test]
async fn wise_lists_every_transfer_once_across_pages_and_its_statement_agrees() {
    let (mock, adapter) = wise().await;
    let sent = send_all(&adapter, wise_payouts("WISEPAGE", 230)).await;
    let now = Utc::now();
    let (from, to) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );

    let listed = pages(&adapter, from, to).await;
    assert_eq!(listed.len(), 3, "230 transfers at 100 a page");
    assert!(listed.iter().all(|p| p.len() <= 100));
    let records = by_id(&listed);
    assert_eq!(records.len(), 230);
    for s in &sent {
        assert_wise_record(&records[&s.provider_ref], s);
        assert!(records[&s.provider_ref].created_at >= from - chrono::Duration::seconds(1));
    }

    // A window in the past, or an empty one, lists nothing.
    let past = pages(
        &adapter,
        now - chrono::Duration::days(3),
        now - chrono::Duration::days(2),
    )
    .await;
    assert!(past.is_empty(), "{past:?}");
    assert!(pages(&adapter, to, to).await.is_empty());

    // The statement export of the same days reads back to exactly the same records.
    let url = format!(
        "{}/__mock/statement.csv?from={}&to={}",
        mock.base_url(),
        day(from),
        day(to)
    );
    assert_eq!(statement(Rail::Wise, &url).await, records);
    let whole = statement(
        Rail::Wise,
        &format!("{}/__mock/statement.csv", mock.base_url()),
    )
    .await;
    assert_eq!(whole, records);
    let yesterday = now - chrono::Duration::days(2);
    let none = format!(
        "{}/__mock/statement.csv?from={}&to={}",
        mock.base_url(),
        day(yesterday),
        day(yesterday)
    );
    assert!(statement(Rail::Wise, &none).await.is_empty());

    // The export is the real balance-statement shape: money out is negative.
    let csv = reqwest::get(format!("{}/__mock/statement.csv", mock.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = &sent[0];
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("TRANSFER-{},", first.provider_ref)))
        .unwrap();
    assert!(line.contains(",-1.00,USD,"), "{line}");
    assert!(line.contains("Ada Referrer"), "{line}");
    mock.stop();
}

#[tokio::test]
async fn wise_paging_survives_new_transfers_between_pages() {
    let (mock, adapter) = wise().await;
    let sent = send_all(&adapter, wise_payouts("WISESHIFT", 9)).await;
    let now = Utc::now();
    let (from, to) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let mut stream = adapter.record_pages_of(from, to, 4);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 4);
    // Two new transfers land at the head of the newest-first listing and push every offset
    // along by two: the next page starts with two transfers already seen.
    send_all(&adapter, wise_payouts("WISELATE", 2)).await;
    let mut all = vec![first];
    while let Some(page) = stream.next().await {
        all.push(page.unwrap());
    }
    let records = by_id(&all);
    assert_eq!(records.len(), 9, "{:?}", records.keys());
    for s in &sent {
        assert_wise_record(&records[&s.provider_ref], s);
    }
    mock.stop();
}

#[tokio::test]
async fn wise_tampered_and_forgotten_transfers_show_in_the_listing_and_the_statement() {
    let (mock, adapter) = wise().await;
    let (hook, webhooks) = webhook_sink().await;
    mock.outbox().set_target(Some(hook));
    let sent = send_all(&adapter, wise_payouts("WISETAMPER", 5)).await;
    // The normal path: one event at creation, one when funding starts processing.
    wait_for_webhooks(&webhooks, 10).await;
    let (changed, gone) = (&sent[1], &sent[3]);
    let http = reqwest::Client::new();
    let tampered = http
        .post(format!("{}/__mock/tamper", mock.base_url()))
        .json(&serde_json::json!({
            "id": changed.provider_ref.parse::<u64>().unwrap(),
            "source_value": "12.34",
            "source_currency": "EUR",
            "target_account": 1003,
            "status": "funds_refunded",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 200);
    let deleted = http
        .delete(format!(
            "{}/__mock/transfers/{}",
            mock.base_url(),
            gone.provider_ref
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let again = http
        .delete(format!(
            "{}/__mock/transfers/{}",
            mock.base_url(),
            gone.provider_ref
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let unknown = http
        .post(format!("{}/__mock/tamper", mock.base_url()))
        .json(&serde_json::json!({"id": 1, "status": "cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let now = Utc::now();
    let records = by_id(
        &pages(
            &adapter,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await,
    );
    assert_eq!(records.len(), 4);
    assert!(!records.contains_key(&gone.provider_ref));
    let r = &records[&changed.provider_ref];
    assert_eq!(r.amount, Money::from_minor_units(1234, Currency::Eur));
    assert_eq!(r.payee, "1003");
    assert_eq!(
        (r.state, r.provider_status.as_str()),
        (RailState::Returned, "funds_refunded")
    );
    // Its token still finds our payout; only the provider's facts changed.
    assert_eq!(
        r.reference.as_deref(),
        Some(customer_transaction_id(&changed.key).to_string().as_str())
    );
    for s in [&sent[0], &sent[2], &sent[4]] {
        assert_wise_record(&records[&s.provider_ref], s);
    }
    let exported = statement(
        Rail::Wise,
        &format!("{}/__mock/statement.csv", mock.base_url()),
    )
    .await;
    assert_eq!(exported, records);
    // Silent: no webhook beyond the ones the normal path sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(webhooks.load(Ordering::SeqCst), 10);
    mock.stop();
}

// ---------------------------------------------------------------- PartnerStack

/// A mock whose rewards stay `pending` unless a test moves them.
async fn partnerstack() -> (MockPartnerstack, PartnerstackAdapter) {
    let config = MockPartnerstackConfig {
        process_after_ms: 3_600_000,
        late_after_ms: 3_600_000,
        ..MockPartnerstackConfig::default()
    };
    let mock = MockPartnerstack::start(loopback(), config).await.unwrap();
    let adapter = PartnerstackAdapter::new(PartnerstackConfig {
        api_base: mock.base_url(),
        public_key: "pk_live_mock".into(),
        secret_key: SecretString::from("sk_live_mock"),
        timeout: Duration::from_secs(10),
        webhook_token: None,
    })
    .unwrap();
    (mock, adapter)
}

/// `n` PartnerStack payouts to two partners; every tenth payout id has a `+`, so its attempt
/// key is not a plain reward key and the reward key is a digest of it.
fn partnerstack_payouts(prefix: &str, n: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let payout = if i % 10 == 0 {
                format!("po_{prefix}+{i:04}")
            } else {
                format!("po_{prefix}{i:04}")
            };
            let partner = if i % 2 == 0 { "pk_alice" } else { "pk_bob" };
            let currency = if i % 3 == 0 {
                Currency::Eur
            } else {
                Currency::Usd
            };
            Sent::new(
                &payout,
                partner,
                Money::from_minor_units(500 + i as i64, currency),
            )
        })
        .collect()
}

fn assert_reward_record(r: &ProviderRecord, sent: &Sent) {
    let key = reward_key(&sent.key);
    assert_eq!(r.rail, Rail::Partnerstack);
    assert_eq!(r.kind, RecordKind::Reward);
    assert_eq!(r.record_id, key);
    assert_eq!(r.record_id, sent.provider_ref);
    assert_eq!(r.reference.as_deref(), Some(key.as_str()));
    assert_eq!(r.payout_hint.as_deref(), Some(sent.payout.as_str()));
    assert_eq!(r.group_id, None);
    assert_eq!(r.payee, sent.destination);
    assert_eq!(r.amount, sent.amount);
    assert_eq!(
        (r.state, r.provider_status.as_str()),
        (RailState::InFlight, "pending")
    );
}

#[tokio::test]
async fn partnerstack_lists_every_reward_once_across_pages_and_its_export_agrees() {
    let (mock, adapter) = partnerstack().await;
    let sent = send_all(&adapter, partnerstack_payouts("PSPAGE", 520)).await;
    assert!(sent.iter().any(|s| s.provider_ref.starts_with("payout-")));
    let now = Utc::now();
    let (from, to) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );

    let listed = pages(&adapter, from, to).await;
    assert_eq!(listed.len(), 3, "520 rewards at 250 a page");
    assert!(listed.iter().all(|p| p.len() <= 250));
    let records = by_id(&listed);
    assert_eq!(records.len(), 520);
    let sent_by_key: HashMap<&str, &Sent> =
        sent.iter().map(|s| (s.provider_ref.as_str(), s)).collect();
    for (key, r) in &records {
        assert_reward_record(r, sent_by_key[key.as_str()]);
        assert_eq!(r.created_at.timestamp_subsec_nanos(), 0);
    }

    // A window that ends before the rewards, or an empty one, lists nothing.
    assert!(
        pages(
            &adapter,
            now - chrono::Duration::days(3),
            now - chrono::Duration::days(2)
        )
        .await
        .is_empty()
    );
    assert!(pages(&adapter, to, to).await.is_empty());
    // Windows split at a second boundary are half-open on the provider's own millisecond
    // times: every reward falls in exactly one of them.
    let cut = records.values().map(|r| r.created_at).max().unwrap();
    let head = by_id(&pages(&adapter, from, cut).await);
    let tail = by_id(&pages(&adapter, cut, to).await);
    let expected_head: Vec<String> = mock
        .rewards()
        .into_iter()
        .filter(|r| r.created_at < cut.timestamp_millis())
        .map(|r| r.key)
        .collect();
    assert_eq!(
        head.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected_head.into_iter().collect()
    );
    assert!(!tail.is_empty());
    assert_eq!(head.len() + tail.len(), 520);
    assert!(head.keys().all(|k| !tail.contains_key(k)));

    let url = format!(
        "{}/__mock/statement.csv?from={}&to={}",
        mock.root_url(),
        day(from),
        day(to)
    );
    assert_eq!(statement(Rail::Partnerstack, &url).await, records);
    // Test-pair rewards are another world: none were made.
    let test_url = format!("{}/__mock/statement.csv?test=true", mock.root_url());
    assert!(statement(Rail::Partnerstack, &test_url).await.is_empty());
    let past = now - chrono::Duration::days(2);
    let none = format!(
        "{}/__mock/statement.csv?from={}&to={}",
        mock.root_url(),
        day(past),
        day(past)
    );
    assert!(statement(Rail::Partnerstack, &none).await.is_empty());
    mock.stop();
}

#[tokio::test]
async fn partnerstack_tampered_and_forgotten_rewards_show_in_the_listing_and_the_export() {
    let (mock, adapter) = partnerstack().await;
    let (hook, webhooks) = webhook_sink().await;
    mock.outbox().set_target(Some(hook));
    let sent = send_all(&adapter, partnerstack_payouts("PSTAMPER", 6)).await;
    wait_for_webhooks(&webhooks, 6).await;
    let changed = sent.iter().find(|s| s.destination == "pk_alice").unwrap();
    let gone = sent.iter().find(|s| s.destination == "pk_bob").unwrap();
    let http = reqwest::Client::new();
    let tampered = http
        .post(format!("{}/__mock/tamper", mock.root_url()))
        .json(&serde_json::json!({
            "key": changed.provider_ref,
            "amount": 999,
            "currency": "GBP",
            "partner_key": "pk_bob",
            "payment_status": "failed",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 200);
    let deleted = http
        .delete(format!(
            "{}/__mock/rewards/{}",
            mock.root_url(),
            gone.provider_ref
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let again = http
        .delete(format!(
            "{}/__mock/rewards/{}",
            mock.root_url(),
            gone.provider_ref
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let now = Utc::now();
    let records = by_id(
        &pages(
            &adapter,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await,
    );
    assert_eq!(records.len(), 5);
    assert!(!records.contains_key(&gone.provider_ref));
    let r = &records[&changed.provider_ref];
    assert_eq!(r.amount, Money::from_minor_units(999, Currency::Gbp));
    assert_eq!(r.payee, "pk_bob");
    assert_eq!(
        (r.state, r.provider_status.as_str()),
        (RailState::Disputed, "failed")
    );
    assert_eq!(
        r.reference.as_deref(),
        Some(reward_key(&changed.key).as_str())
    );
    for s in sent
        .iter()
        .filter(|s| s.provider_ref != changed.provider_ref && s.provider_ref != gone.provider_ref)
    {
        assert_reward_record(&records[&s.provider_ref], s);
    }
    let exported = statement(
        Rail::Partnerstack,
        &format!("{}/__mock/statement.csv", mock.root_url()),
    )
    .await;
    assert_eq!(exported, records);
    // Silent: the tamper and the delete sent no webhook.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(webhooks.load(Ordering::SeqCst), 6);

    // Forgotten means forgotten: the same attempt can record its reward again.
    match adapter.submit(&gone.sub(), &NoCheckpoints).await {
        SendDecision::Landed { provider_ref, .. } => assert_eq!(provider_ref, gone.provider_ref),
        other => panic!("resend after forget: {other:?}"),
    }
    let records = by_id(
        &pages(
            &adapter,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await,
    );
    assert_eq!(records.len(), 6);
    assert_reward_record(&records[&gone.provider_ref], gone);
    mock.stop();
}
