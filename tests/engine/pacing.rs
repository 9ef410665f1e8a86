//! Pacing: a run of 2,000 payouts on one rail, sent by eight concurrent steps, against a
//! Stripe mock that enforces its own rate limit: the client's pacer keeps every second under
//! the configured rate plus its burst, so the provider never answers 429; every payout is
//! paid exactly once. A slower machine only makes the run slower, never faster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::common::{TestEnv, fast_policy};
use payouts::domain::pacing::Pace;
use payouts::domain::payout_run::RunPeriod;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::providers::rail::Rails;
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::sim::stripe::Faults;

const PAYEES: usize = 2_000;
const PACE: Pace = Pace {
    per_second: 100,
    burst: 10,
};
/// The provider's own limit, above the pace: arrivals on loopback can bunch a little.
const PROVIDER_LIMIT: u32 = 150;

fn payees(n: usize) -> String {
    (0..n)
        .map(|i| {
            let r = format!("pace{i:04}");
            [
                format!(r#"{{"type":"account","id":"{r}","created_at":"2025-01-01T00:00:00Z","email":"{r}@x.com"}}"#),
                format!(r#"{{"type":"account","id":"{r}-u","created_at":"2025-02-01T00:00:00Z","email":"{r}-u@x.com"}}"#),
                format!(r#"{{"type":"referral","program":"vast","referrer":"{r}","referred":"{r}-u","at":"2025-02-01T00:00:00Z"}}"#),
                format!(r#"{{"type":"usage","id":"{r}-c1","account":"{r}-u","at":"2025-03-01T00:00:00Z","category":"instance","amount":"100","currency":"USD"}}"#),
                format!(r#"{{"type":"payout_method","account":"{r}","rail":"stripe","destination":"acct_1{r}","auto_payout":true}}"#),
            ]
            .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_run_of_thousands_on_one_rail_stays_under_its_pace_with_no_429() {
    let env = TestEnv::new(Faults {
        limit_per_sec: PROVIDER_LIMIT,
        ..Faults::default()
    })
    .await;
    env.ingest(&payees(PAYEES)).await;
    let run = env
        .store
        .run_payouts(&RunPeriod::parse("pacing").unwrap(), false)
        .await
        .unwrap();
    assert_eq!(run.created, PAYEES as u64);

    let adapter = StripeAdapter::new(StripeConfig {
        api_base: env.mock.base_url(),
        secret_key: SecretString::from("sk_test_mock".to_string()),
        timeout: Duration::from_secs(5),
        list_lag: payouts::providers::stripe::SETTLE.list_lag,
        webhook_secrets: Vec::new(),
    })
    .unwrap()
    .with_settle_timing(env.settle)
    .with_pace(Some(PACE));
    let deps = Arc::new(PayoutDeps {
        rails: Rails::default().with(Arc::new(adapter)),
        ..(*env.deps_with("sk_test_mock", fast_policy(), "paced")).clone()
    });
    let started = Instant::now();
    run_worker(
        deps,
        WorkerOptions {
            concurrency: 8,
            until_idle: true,
            sweep_every: Duration::from_secs(1),
            sweep_grace: Duration::from_secs(2),
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(600)),
        |_| {},
    )
    .await
    .unwrap();

    let ids: Vec<String> = env
        .store
        .list_payouts(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(ids.len(), PAYEES);
    env.assert_paid_exactly_once(&ids).await;

    let (mut arrivals, refused) = env.mock.arrivals();
    assert_eq!(refused, 0, "no 429 storm: not one 429");
    arrivals.retain(|at| *at >= started);
    arrivals.sort();
    let most = arrivals
        .iter()
        .enumerate()
        .map(|(i, start)| {
            arrivals[i..]
                .iter()
                .take_while(|t| **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let cap = (PACE.per_second + PACE.burst) as usize;
    // The pacer lets at most rate + burst leave in any second; loopback can bunch a few.
    assert!(
        most <= cap + cap / 10,
        "{most} requests in one second (pace {cap})"
    );
    let span = arrivals
        .last()
        .unwrap()
        .duration_since(arrivals[0])
        .as_secs_f64();
    let overall = arrivals.len() as f64 / span.max(1e-3);
    assert!(
        overall <= f64::from(PACE.per_second) * 1.1,
        "{overall:.1} requests/s over {span:.1} s"
    );
}
