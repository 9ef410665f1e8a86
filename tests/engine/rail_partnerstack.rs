//! The PartnerStack rail against its mock over real HTTP on loopback: every error class,
//! exactly-once under commit-then-drop (also after the mock forgets keys), duplicate-key
//! modes and scripted late outcomes (the webhook hint path: `rail_partnerstack_webhooks`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use payouts::domain::ids::PayoutId;
use payouts::domain::money::{Currency, Money};
use payouts::domain::payout::{LookupFinding, SendDecision, attempt_key};
use payouts::domain::settle::SettleTiming;
use payouts::domain::tracking::RailState;
use payouts::providers::partnerstack::{self, PartnerstackAdapter, PartnerstackConfig, reward_key};
use payouts::providers::rail::{NoCheckpoints, PastAttempt, PayoutRail, Submission};
use payouts::sim::partnerstack::{DuplicateKey, Faults, MockPartnerstack, MockPartnerstackConfig};
use secrecy::SecretString;

pub(super) fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub(super) fn fast() -> MockPartnerstackConfig {
    MockPartnerstackConfig {
        process_after_ms: 60,
        late_after_ms: 150,
        ..MockPartnerstackConfig::default()
    }
}

/// These tests settle at once: the mock commits every request before answering (no late
/// commits), so an adapter told so may take a read that finds nothing as proof.
fn adapter_with(mock: &MockPartnerstack, public: &str, secret: &str) -> PartnerstackAdapter {
    PartnerstackAdapter::new(PartnerstackConfig {
        api_base: mock.base_url(),
        public_key: public.into(),
        secret_key: SecretString::from(secret.to_string()),
        timeout: Duration::from_secs(5),
        webhook_token: None,
    })
    .unwrap()
    .with_settle_timing(SettleTiming {
        max_execution: Some(Duration::ZERO),
        ..partnerstack::SETTLE
    })
}

/// Every attempt already past the settle window, on a mock whose listings do not lag: the
/// adapter lists, and a listing that finds nothing proves absence.
fn listing_only() -> SettleTiming {
    SettleTiming {
        window: Duration::ZERO,
        list_lag: Duration::ZERO,
        max_execution: Some(Duration::ZERO),
    }
}

pub(super) async fn start(
    config: MockPartnerstackConfig,
) -> (MockPartnerstack, PartnerstackAdapter) {
    let mock = MockPartnerstack::start(loopback(), config).await.unwrap();
    let adapter = adapter_with(&mock, "pk_live_mock", "sk_live_mock");
    (mock, adapter)
}

/// Owned pieces of one attempt, so tests can build `Submission`s freely.
pub(super) struct Attempt {
    payout: PayoutId,
    n: u32,
    key: String,
    dest: String,
    amount: Money,
}

impl Attempt {
    pub(super) fn new(payout: &str, n: u32, dest: &str, minor: i64) -> Self {
        let payout = PayoutId::parse(payout).unwrap();
        Attempt {
            key: attempt_key(&payout, n),
            payout,
            n,
            dest: dest.into(),
            amount: Money::from_minor_units(minor, Currency::Usd),
        }
    }

    fn sub(&self) -> Submission<'_> {
        Submission {
            payout_id: &self.payout,
            attempt: self.n,
            destination: &self.dest,
            amount: self.amount,
            idempotency_key: &self.key,
            checkpoint: None,
            left_by: None,
        }
    }

    fn past(&self, provider_ref: Option<String>) -> PastAttempt {
        PastAttempt {
            attempt: self.n,
            idempotency_key: self.key.clone(),
            started_at: Utc::now(),
            provider_ref,
            checkpoint: None,
        }
    }
}

pub(super) async fn submit(adapter: &PartnerstackAdapter, a: &Attempt) -> SendDecision {
    adapter.submit(&a.sub(), &NoCheckpoints).await
}

async fn resolve(
    adapter: &PartnerstackAdapter,
    a: &Attempt,
    earlier: &[PastAttempt],
) -> LookupFinding {
    adapter
        .resolve(&a.sub(), earlier, Utc::now(), &NoCheckpoints)
        .await
        .unwrap()
}

/// Polls `status` until it reports `want` or the deadline passes.
async fn wait_for(adapter: &PartnerstackAdapter, key: &str, want: RailState, word: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let obs = adapter.status(key).await.unwrap();
        if obs.state == want && obs.provider_status == word {
            assert!(obs.occurred_at.is_some());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached {want:?}/{word}; last {obs:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(super) fn landed_ref(d: &SendDecision) -> String {
    match d {
        SendDecision::Landed {
            provider_ref,
            observation,
        } => {
            assert_eq!(observation.state, RailState::InFlight);
            assert_eq!(observation.provider_status, "pending");
            provider_ref.clone()
        }
        other => panic!("expected Landed, got {other:?}"),
    }
}

#[tokio::test]
async fn success_reaches_paid_and_the_mock_records_our_payout() {
    let (mock, adapter) = start(fast()).await;
    let a = Attempt::new("po_ok1", 1, "pk_alice", 1234);
    let key = landed_ref(&submit(&adapter, &a).await);
    assert_eq!(key, reward_key(&a.key));
    wait_for(&adapter, &key, RailState::Paid, "available").await;
    let moved = mock.moved();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].payout_id, "po_ok1");
    assert_eq!(moved[0].provider_ref, key);
    assert_eq!(moved[0].minor, 1234);
    assert_eq!(moved[0].currency, "USD");
    assert_eq!(moved[0].state, RailState::Paid);
    assert!(adapter.dedupe_window().is_none());
    mock.stop();
}

#[tokio::test]
async fn rate_limit_is_retry_with_retry_after_and_records_nothing() {
    let (mock, adapter) = start(fast()).await;
    mock.set_faults(Faults {
        rate_limit_rate: 1.0,
        ..Faults::default()
    });
    let a = Attempt::new("po_rl", 1, "pk_alice", 500);
    match submit(&adapter, &a).await {
        SendDecision::Throttled {
            retry_after,
            reason,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
            assert!(reason.contains("429"), "{reason}");
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(mock.moved().is_empty());
    assert_eq!(resolve(&adapter, &a, &[]).await, LookupFinding::Absent);
}

#[tokio::test]
async fn server_errors_are_unknown_and_resolve_tells_before_from_after_commit() {
    let (mock, adapter) = start(fast()).await;
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let before = Attempt::new("po_500a", 1, "pk_alice", 700);
    assert!(matches!(
        submit(&adapter, &before).await,
        SendDecision::Unknown { .. }
    ));
    assert_eq!(resolve(&adapter, &before, &[]).await, LookupFinding::Absent);

    mock.set_faults(Faults {
        error_after_commit_rate: 1.0,
        ..Faults::default()
    });
    let after = Attempt::new("po_500b", 1, "pk_alice", 700);
    assert!(matches!(
        submit(&adapter, &after).await,
        SendDecision::Unknown { .. }
    ));
    match resolve(&adapter, &after, &[]).await {
        LookupFinding::Landed { provider_ref, .. } => assert_eq!(provider_ref, after.key),
        other => panic!("expected Landed, got {other:?}"),
    }
    assert_eq!(mock.moved().len(), 1);
}

#[tokio::test]
async fn refusals_are_permanent_and_record_nothing() {
    let (mock, adapter) = start(fast()).await;
    let unknown_partner = Attempt::new("po_p1", 1, "pk_nobody", 100);
    let d = submit(&adapter, &unknown_partner).await;
    assert!(
        matches!(&d, SendDecision::Permanent { reason } if reason.contains("404")),
        "{d:?}"
    );
    // A production reward for the test partner mixes worlds: refused.
    let test_partner = Attempt::new("po_p2", 1, "gstest", 100);
    assert!(matches!(
        submit(&adapter, &test_partner).await,
        SendDecision::Permanent { .. }
    ));
    // Bad keys.
    let bad = adapter_with(&mock, "pk_live_mock", "wrong");
    let d = submit(&bad, &Attempt::new("po_p3", 1, "pk_alice", 100)).await;
    assert!(
        matches!(&d, SendDecision::Permanent { reason } if reason.contains("401")),
        "{d:?}"
    );
    // Sub-cent amounts never leave.
    let mut frac = Attempt::new("po_p4", 1, "pk_alice", 100);
    frac.amount = Money::new(rust_decimal::Decimal::new(12345, 3), Currency::Usd);
    assert!(matches!(
        submit(&adapter, &frac).await,
        SendDecision::Permanent { .. }
    ));
    assert!(mock.moved().is_empty());
}

#[tokio::test]
async fn test_keys_live_in_their_own_world() {
    let (mock, prod) = start(fast()).await;
    let test = adapter_with(&mock, "pk_test_mock", "sk_test_mock");
    let a = Attempt::new("po_t1", 1, "gstest", 100);
    let key = landed_ref(&submit(&test, &a).await);
    assert!(mock.rewards()[0].test);
    // The test pair may not reward real partners.
    assert!(matches!(
        submit(&test, &Attempt::new("po_t2", 1, "pk_alice", 100)).await,
        SendDecision::Permanent { .. }
    ));
    // Each pair sees only its own rewards.
    assert!(matches!(
        resolve(&test, &a, &[]).await,
        LookupFinding::Landed { .. }
    ));
    assert_eq!(resolve(&prod, &a, &[]).await, LookupFinding::Absent);
    assert!(prod.status(&key).await.is_err());
}

#[tokio::test]
async fn drop_after_commit_is_unknown_and_resolve_finds_the_single_reward() {
    let (mock, adapter) = start(fast()).await;
    mock.set_faults(Faults {
        drop_after_commit_rate: 1.0,
        ..Faults::default()
    });
    let a = Attempt::new("po_drop", 1, "pk_bob", 4200);
    let d = submit(&adapter, &a).await;
    assert!(matches!(d, SendDecision::Unknown { .. }), "{d:?}");
    mock.set_faults(Faults::default());
    match resolve(&adapter, &a, &[]).await {
        LookupFinding::Landed {
            provider_ref,
            observation,
        } => {
            assert_eq!(provider_ref, a.key);
            assert_ne!(observation.state, RailState::Returned);
        }
        other => panic!("expected Landed, got {other:?}"),
    }
    assert_eq!(mock.moved().len(), 1);
    assert_eq!(mock.posts(), 1, "resolve never re-sends");
}

#[tokio::test]
async fn expired_key_memory_still_cannot_pay_twice() {
    let (mock, adapter) = start(fast()).await;
    mock.set_faults(Faults {
        drop_first_attempt: true,
        key_ttl_ms: 100,
        ..Faults::default()
    });
    let a = Attempt::new("po_ttl", 1, "pk_bob", 999);
    assert!(matches!(
        submit(&adapter, &a).await,
        SendDecision::Unknown { .. }
    ));
    // The ttl is internal to the mock and has no observable signal: wait past it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    match resolve(&adapter, &a, &[]).await {
        LookupFinding::Landed { provider_ref, .. } => assert_eq!(provider_ref, a.key),
        other => panic!("expected Landed, got {other:?}"),
    }
    assert_eq!(mock.moved().len(), 1);
    assert_eq!(mock.posts(), 1);
}

/// The danger the previous test avoids is real in the mock: re-sending after the ttl makes
/// a second reward, and resolve then reports a Duplicate instead of hiding it. (A read by
/// key shows one reward per key, so this is the listing's case: past the settle window.)
#[tokio::test]
async fn a_resend_after_the_ttl_would_double_pay_and_resolve_says_so() {
    let (mock, adapter) = start(fast()).await;
    let adapter = adapter.with_settle_timing(listing_only());
    mock.set_faults(Faults {
        key_ttl_ms: 50,
        ..Faults::default()
    });
    let a = Attempt::new("po_twice", 1, "pk_bob", 300);
    landed_ref(&submit(&adapter, &a).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(
        submit(&adapter, &a).await,
        SendDecision::Landed { .. }
    ));
    assert_eq!(mock.moved().len(), 2);
    match resolve(&adapter, &a, &[]).await {
        LookupFinding::Duplicate { provider_refs } => assert_eq!(provider_refs.len(), 2),
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_key_rejected_is_unknown_then_resolved() {
    let (mock, adapter) = start(fast()).await;
    let a = Attempt::new("po_dup1", 1, "pk_alice", 250);
    landed_ref(&submit(&adapter, &a).await);
    let d = submit(&adapter, &a).await;
    assert!(
        matches!(&d, SendDecision::Unknown { reason } if reason.contains("409") && reason.contains("duplicate")),
        "{d:?}"
    );
    assert!(matches!(
        resolve(&adapter, &a, &[]).await,
        LookupFinding::Landed { .. }
    ));
    assert_eq!(mock.moved().len(), 1);
}

#[tokio::test]
async fn duplicate_key_returning_the_existing_reward_lands_once() {
    let (mock, adapter) = start(MockPartnerstackConfig {
        duplicate_key: DuplicateKey::ReturnExisting,
        ..fast()
    })
    .await;
    let a = Attempt::new("po_dup2", 1, "pk_alice", 250);
    let first = landed_ref(&submit(&adapter, &a).await);
    match submit(&adapter, &a).await {
        SendDecision::Landed { provider_ref, .. } => assert_eq!(provider_ref, first),
        other => panic!("expected Landed, got {other:?}"),
    }
    assert_eq!(mock.moved().len(), 1);
}

#[tokio::test]
async fn resolve_counts_every_attempt_key_across_pages() {
    let (mock, adapter) = start(fast()).await;
    let adapter = adapter.with_settle_timing(listing_only());
    let first = Attempt::new("po_multi", 1, "pk_bob", 800);
    let first_key = landed_ref(&submit(&adapter, &first).await);
    // Push the first attempt's reward past one page of 250.
    for i in 0..260 {
        landed_ref(
            &submit(
                &adapter,
                &Attempt::new(&format!("po_filler{i}"), 1, "pk_bob", 1),
            )
            .await,
        );
    }
    let second = Attempt::new("po_multi", 2, "pk_bob", 800);
    let earlier = [first.past(Some(first_key.clone()))];
    match resolve(&adapter, &second, &earlier).await {
        LookupFinding::Landed { provider_ref, .. } => assert_eq!(provider_ref, first_key),
        other => panic!("expected Landed, got {other:?}"),
    }
    // Both attempts landing is a duplicate.
    landed_ref(&submit(&adapter, &second).await);
    match resolve(&adapter, &second, &earlier).await {
        LookupFinding::Duplicate { provider_refs } => assert_eq!(provider_refs.len(), 2),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    // A payout nobody paid is absent.
    let none = Attempt::new("po_none", 2, "pk_bob", 800);
    assert_eq!(
        resolve(
            &adapter,
            &none,
            &[Attempt::new("po_none", 1, "pk_bob", 800).past(None)]
        )
        .await,
        LookupFinding::Absent
    );
    assert_eq!(mock.moved().len(), 262);
}

#[tokio::test]
async fn scripted_late_outcomes_reach_the_right_state() {
    let (mock, adapter) = start(fast()).await;
    let expire =
        landed_ref(&submit(&adapter, &Attempt::new("po_exp", 1, "expire_pk_carol", 100)).await);
    let refund =
        landed_ref(&submit(&adapter, &Attempt::new("po_ref", 1, "refund_pk_erin", 100)).await);
    let fail =
        landed_ref(&submit(&adapter, &Attempt::new("po_fail", 1, "fail_pk_dave", 100)).await);
    let withdraw = landed_ref(
        &submit(
            &adapter,
            &Attempt::new("po_wd", 1, "withdraw_pk_frank", 100),
        )
        .await,
    );
    wait_for(&adapter, &expire, RailState::Paid, "available").await;
    // Whether an expired or failed reward's money comes back is unconfirmed: an operator's call.
    wait_for(&adapter, &expire, RailState::Disputed, "expired").await;
    wait_for(&adapter, &refund, RailState::Returned, "paid_and_refunded").await;
    wait_for(&adapter, &fail, RailState::Disputed, "failed").await;
    wait_for(&adapter, &withdraw, RailState::Paid, "withdrawn").await;
    // The test control moves a reward by hand.
    let manual = landed_ref(&submit(&adapter, &Attempt::new("po_man", 1, "pk_alice", 100)).await);
    assert!(mock.advance(&manual, "paid_externally"));
    wait_for(&adapter, &manual, RailState::Paid, "paid_externally").await;
    let states: Vec<(String, RailState)> = mock
        .moved()
        .into_iter()
        .map(|m| (m.payout_id, m.state))
        .collect();
    assert!(states.contains(&("po_exp".into(), RailState::Returned)));
    assert!(states.contains(&("po_wd".into(), RailState::Paid)));
}
