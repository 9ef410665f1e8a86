//! The worker's daily reconciliation: a day whose run failed, or whose task died, is not
//! lost. Its claim is given back so a later tick runs it again, and a run whose task died
//! is marked failed rather than left running.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestEnv, eventually};
use payouts::domain::ids::Rail;
use payouts::domain::reconcile::Tolerances;
use payouts::providers::rail::Rails;
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::reconcile::schedule::{DailyReconciliation, day_before, reconcile_day};
use payouts::sim::stripe::Faults;
use payouts::storage::{NewRun, ReconRun, Store, Trigger};
use secrecy::SecretString;

/// 2026-11-21T02:30:00Z, the default schedule's tick.
const TICK: u64 = 1_795_228_200;
const DAY: u64 = 86_400;

fn daily(store: &Store, api_base: String) -> DailyReconciliation {
    let stripe = StripeAdapter::new(StripeConfig {
        api_base,
        secret_key: SecretString::from("sk_test_mock".to_string()),
        timeout: Duration::from_secs(30),
        list_lag: payouts::providers::stripe::SETTLE.list_lag,
        webhook_secrets: Vec::new(),
    })
    .expect("adapter");
    DailyReconciliation {
        store: store.clone(),
        rails: Rails::default().with(Arc::new(stripe)),
        tolerances: Tolerances::default(),
    }
}

/// The runs of the day a tick at `tick` reconciles.
async fn runs_of(store: &Store, tick: u64) -> Vec<ReconRun> {
    let day = day_before(tick).from;
    store
        .recon_runs(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.period_from == day)
        .collect()
}

fn statuses(runs: &[ReconRun]) -> Vec<&str> {
    runs.iter().map(|r| r.status.as_str()).collect()
}

#[tokio::test]
async fn a_failed_daily_reconciliation_is_retried_by_the_next_tick() {
    let env = TestEnv::new(Faults::default()).await;
    // Nothing listens there: reading the provider's records fails.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = daily(&env.store, format!("http://{closed}"));
    assert!(reconcile_day(&down, TICK).await.is_err());
    assert_eq!(statuses(&runs_of(&env.store, TICK).await), ["failed"]);
    // The provider is back; the next day's tick reconciles its own day and the failed one.
    let up = daily(&env.store, env.mock.base_url());
    reconcile_day(&up, TICK + DAY).await.unwrap();
    assert_eq!(
        statuses(&runs_of(&env.store, TICK + DAY).await),
        ["completed"]
    );
    let retried = runs_of(&env.store, TICK).await;
    assert!(
        retried.iter().any(|r| r.status == "completed"),
        "the failed day was not retried: {:?}",
        statuses(&retried)
    );
}

#[tokio::test]
async fn a_daily_reconciliation_whose_task_dies_is_marked_failed_and_retried() {
    let env = TestEnv::new(Faults::default()).await;
    // A provider that accepts connections and never answers: the run hangs mid-read.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let hung = daily(&env.store, format!("http://{silent_addr}"));
    let task = tokio::spawn(async move { reconcile_day(&hung, TICK).await });
    assert!(
        eventually(30, || async {
            statuses(&runs_of(&env.store, TICK).await) == ["running"]
        })
        .await,
        "the run never started"
    );
    // The task dies (a worker stopping, a panic): its future is dropped mid-run.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        eventually(10, || async {
            statuses(&runs_of(&env.store, TICK).await) == ["failed"]
        })
        .await,
        "the run of a dead task was left {:?}",
        statuses(&runs_of(&env.store, TICK).await)
    );
    // Its claim was given back with the same write that failed it: a worker that sees the
    // run failed finds the day free.
    let period = day_before(TICK);
    let free = env
        .store
        .recon_days_to_retry(
            period.from - chrono::Days::new(1),
            period.from + chrono::Days::new(1),
        )
        .await
        .unwrap();
    assert_eq!(free, [period.from], "the failed run's day is still claimed");
    // The next tick for the day runs it.
    let up = daily(&env.store, env.mock.base_url());
    reconcile_day(&up, TICK).await.unwrap();
    let runs = runs_of(&env.store, TICK).await;
    assert!(
        runs.iter().any(|r| r.status == "completed"),
        "the day was not retried: {:?}",
        statuses(&runs)
    );
}

#[tokio::test]
async fn a_claim_left_by_a_killed_process_lapses_and_its_run_is_marked_failed() {
    let env = TestEnv::new(Faults::default()).await;
    let period = day_before(TICK);
    let up = daily(&env.store, env.mock.base_url());
    // A process claimed the day and started its run; then it was killed, so nothing gave the
    // claim back.
    assert!(
        env.store
            .recon_claim_day(period.from, "rr_killed", Duration::from_secs(3600))
            .await
            .unwrap()
    );
    env.store
        .recon_begin(&NewRun {
            id: "rr_killed".into(),
            period,
            rails: vec![Rail::Stripe],
            source: "api".into(),
            trigger: Trigger::Schedule,
            tolerances: Tolerances::default(),
        })
        .await
        .unwrap();
    // While its claim is live, the day stays with it: no second run starts.
    reconcile_day(&up, TICK).await.unwrap();
    assert_eq!(statuses(&runs_of(&env.store, TICK).await), ["running"]);
    // The claim lapses; the next tick takes the day over and the dead run is marked failed.
    payouts::on_backend!(&env.store, s => sqlx::query("UPDATE recon_daily SET expires_at = 1")
        .execute(s.pool())
        .await
        .map(|_| ()))
    .unwrap();
    reconcile_day(&up, TICK).await.unwrap();
    let runs = runs_of(&env.store, TICK).await;
    let killed = runs.iter().find(|r| r.id == "rr_killed").unwrap();
    assert_eq!(killed.status, "failed");
    assert!(
        killed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("stopped"),
        "{killed:?}"
    );
    assert!(
        runs.iter().any(|r| r.status == "completed"),
        "{:?}",
        statuses(&runs)
    );
    // Completed: later ticks leave the day alone.
    reconcile_day(&up, TICK).await.unwrap();
    reconcile_day(&up, TICK + DAY).await.unwrap();
    assert_eq!(runs_of(&env.store, TICK).await.len(), runs.len());
}
