//! Withdrawals: checks, idempotency keys, and the race for one balance.

use crate::common;

use crate::common::{DEMO, TestEnv, usd};
use payouts::domain::money::Currency;
use payouts::sim::stripe::Faults;
use payouts::storage::payout_views::WithdrawError;

async fn payout_count(env: &TestEnv) -> i64 {
    common::scalar(&env.store, "SELECT COUNT(*) FROM payouts").await
}

#[tokio::test]
async fn refusals_are_clear_and_change_nothing() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;

    let err = env.withdraw("ref-dave", usd("10"), "d1").await.unwrap_err();
    assert!(matches!(err, WithdrawError::Ineligible { .. }), "{err}");
    assert!(err.to_string().contains("855.00 USD"));

    let err = env
        .withdraw("ref-alice", usd("36.69"), "a1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, WithdrawError::InsufficientFunds { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("36.68 USD"));

    let err = env.withdraw("ref-lena", usd("1"), "l1").await.unwrap_err();
    assert!(matches!(err, WithdrawError::NoPayoutMethod { .. }), "{err}");

    let err = env.withdraw("nobody", usd("1"), "n1").await.unwrap_err();
    assert!(matches!(err, WithdrawError::UnknownAccount(_)), "{err}");

    let err = env
        .withdraw(
            "ref-alice",
            payouts::domain::money::Money::parse_payable("1", Currency::Eur).unwrap(),
            "e1",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WithdrawError::NoBalance { .. }), "{err}");

    assert_eq!(payout_count(&env).await, 0);
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_payout_and_refuses_other_requests() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    let first = env.withdraw("ref-alice", usd("10"), "key-1").await.unwrap();
    assert!(!first.replayed);
    let again = env.withdraw("ref-alice", usd("10"), "key-1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.payout.id, first.payout.id);
    let other = env
        .withdraw("ref-alice", usd("11"), "key-1")
        .await
        .unwrap_err();
    assert!(
        matches!(other, WithdrawError::IdempotencyConflict { .. }),
        "{other}"
    );
    assert_eq!(payout_count(&env).await, 1);
    assert_eq!(env.payable("ref-alice").await, usd("26.68"));
    env.assert_ledger_sound().await;
}

#[tokio::test]
async fn concurrent_withdrawals_of_the_whole_balance_let_exactly_one_through() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    for account in ["ref-alice", "ref-gina", "ref-nia", "ref-oli", "ref-mo"] {
        let all = env.payable(account).await;
        let attempts: Vec<_> = (0..4)
            .map(|i| {
                let store = env.store.clone();
                let key = format!("{account}-race-{i}");
                let account = account.to_string();
                tokio::spawn(async move {
                    store
                        .create_withdrawal(&payouts::storage::payout_views::WithdrawalRequest {
                            account: account.parse().unwrap(),
                            program: common::vast(),
                            rail: payouts::domain::ids::Rail::Stripe,
                            amount: all,
                            idempotency_key: key.parse().unwrap(),
                        })
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for a in attempts {
            match a.await.unwrap() {
                Ok(_) => ok += 1,
                Err(WithdrawError::InsufficientFunds { .. } | WithdrawError::Ineligible { .. }) => {
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(
            ok, 1,
            "{account}: exactly one withdrawal may take the balance"
        );
        assert_eq!(env.payable(account).await, usd("0"));
    }
    env.assert_ledger_sound().await;
}

/// A withdrawal under an API key, answered by `answer`.
async fn keyed(
    store: payouts::storage::Store,
    key: &str,
    answer: payouts::storage::Answerer,
) -> payouts::storage::StoreResult<payouts::storage::Keyed> {
    let request = payouts::storage::WithdrawalRequest {
        account: payouts::domain::ids::AccountId::parse("ref-alice").unwrap(),
        program: common::vast(),
        rail: payouts::domain::ids::Rail::Stripe,
        amount: usd("1.00"),
        idempotency_key: payouts::domain::ids::IdempotencyKey::parse(key).unwrap(),
    };
    let scope = "withdrawal:ref-alice";
    let stale = std::time::Duration::from_secs(60);
    store
        .withdraw_keyed(&request, scope, key, stale, answer)
        .await
}

#[tokio::test]
async fn a_panic_inside_one_keyed_withdrawal_leaves_nothing_and_stops_no_later_one() {
    let env = TestEnv::new(Faults::default()).await;
    env.ingest(DEMO).await;
    // On SQLite the panic happens in the group committer's task, on PostgreSQL in the
    // caller's: either way that withdrawal fails and nothing of it is kept.
    let store = env.store.clone();
    let panicked =
        tokio::spawn(async move { keyed(store, "boom-1", Box::new(|_| panic!("injected"))).await })
            .await;
    assert!(
        matches!(panicked, Err(ref e) if e.is_panic()) || matches!(panicked, Ok(Err(_))),
        "{panicked:?}"
    );
    assert_eq!(payout_count(&env).await, 0);

    let answer = |outcome: Result<_, _>| payouts::storage::Answer {
        status: if outcome.is_ok() { 201 } else { 422 },
        body: "{}".into(),
    };
    let made = keyed(env.store.clone(), "after-1", Box::new(answer)).await;
    assert!(
        matches!(made, Ok(payouts::storage::Keyed::Answered(ref a)) if a.status == 201),
        "{made:?}"
    );
    assert_eq!(payout_count(&env).await, 1);
    // The key of the one that panicked is free: its retry does the work.
    let retry = keyed(env.store.clone(), "boom-1", Box::new(answer)).await;
    assert!(
        matches!(retry, Ok(payouts::storage::Keyed::Answered(ref a)) if a.status == 201),
        "{retry:?}"
    );
    assert_eq!(payout_count(&env).await, 2);
}
