//! `payouts demo`: the whole flow on a fresh temporary database against the mock Stripe with
//! faults switched on, ending in a table that compares our payouts with the mock's own record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::domain::ids::{IdempotencyKey, Program, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::providers::rail::Rails;
use payouts::providers::stripe::mock::{Faults, MockConfig, MockStripe};
use payouts::providers::stripe::{StripeAdapter, StripeConfig};
use payouts::storage::Store;
use payouts::storage::balances::load_balance;
use payouts::storage::payouts::WithdrawalRequest;
use secrecy::SecretString;

use super::render;

const FIXTURE: &str = include_str!("../../fixtures/demo.ndjson");

pub async fn run() -> Result<i32> {
    let started = Instant::now();
    let step = |text: &str| println!("\n[{:>5.1}s] {text}", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let db = dir.path().join("demo.db");
    step(&format!(
        "Creating a fresh SQLite database at {}",
        db.display()
    ));
    let store = Store::open_sqlite(&db).await?;

    let faults = Faults {
        latency_ms: 25,
        error_rate: 0.2,
        rate_limit_rate: 0.2,
        drop_after_commit_rate: 0.0,
        drop_first_attempt: true,
        seed: 2026,
        ..Faults::default()
    };
    let mock = MockStripe::start(
        "127.0.0.1:0".parse()?,
        MockConfig {
            faults: faults.clone(),
            ..MockConfig::default()
        },
    )
    .await?;
    step(&format!(
        "Mock Stripe on {} with faults: every first attempt commits then drops the connection, \
         {:.0}% 500s, {:.0}% 429s, {} ms latency",
        mock.base_url(),
        faults.error_rate * 100.0,
        faults.rate_limit_rate * 100.0,
        faults.latency_ms
    ));

    step("Ingesting fixtures/demo.ndjson (twice: the second pass must change nothing)");
    let first = payouts::app::ingest::ingest(&store, FIXTURE.as_bytes(), true).await?;
    let second = payouts::app::ingest::ingest(&store, FIXTURE.as_bytes(), true).await?;
    let inserted: usize = first.by_type.values().map(|c| c.inserted).sum();
    let replay_new: usize = second
        .by_type
        .values()
        .map(|c| c.inserted + c.updated)
        .sum();
    println!(
        "  first pass: {inserted} records, {} referrals judged, {} commission entries",
        first.referrals_judged, first.accruals_posted
    );
    println!(
        "  second pass: {replay_new} new records, {} commission entries (idempotent)",
        second.accruals_posted
    );

    step("Balances of every referrer");
    let referrers = store.referrers().await?;
    let mut payable = Vec::new();
    for account in &referrers {
        let mut conn = store.pool().acquire().await?;
        let balance = load_balance(&mut conn, account).await?;
        drop(conn);
        print!("{}", render::balance(&balance));
        if let Some(p) = balance.program(Program::Vast, Currency::Usd) {
            payable.push((account.clone(), p.payable_now, p.reason.clone()));
        }
    }

    step("Withdrawing everything payable, for every referrer");
    for (account, amount, reason) in &payable {
        if !amount.is_positive() {
            println!(
                "  {account}: not withdrawn: {}",
                reason.as_deref().unwrap_or("nothing available")
            );
            continue;
        }
        let request = WithdrawalRequest {
            account: account.clone(),
            program: Program::Vast,
            rail: Rail::Stripe,
            amount: *amount,
            idempotency_key: IdempotencyKey::parse(&format!("demo-{account}"))?,
        };
        match store.create_withdrawal(&request).await {
            Ok(outcome) => {
                println!(
                    "  {account}: payout {} of {} queued",
                    outcome.payout.id, amount
                );
                // The same request again must return the same payout, not a second one.
                let again = store.create_withdrawal(&request).await?;
                anyhow::ensure!(
                    again.replayed && again.payout.id == outcome.payout.id,
                    "idempotent retry of a withdrawal created a second payout"
                );
            }
            Err(e) => println!("  {account}: refused: {e}"),
        }
    }

    step("Running the payout worker until idle (retries, lookups and all)");
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: Rails::default().with(Arc::new(StripeAdapter::new(StripeConfig {
            api_base: mock.base_url(),
            secret_key: SecretString::from("sk_test_mock"),
            timeout: Duration::from_secs(5),
        })?)),
        policy: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            settle_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        },
        lease_ttl: Duration::from_secs(15),
        worker_id: format!("demo-{}", ulid::Ulid::generate()),
    });
    let clock = Instant::now();
    let last = std::sync::Mutex::new(String::new());
    let progress = move |counts: &[(PayoutStatus, i64)]| {
        let line = counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if *last != line {
            println!("  [{:>4.1}s] {line}", clock.elapsed().as_secs_f64());
            *last = line;
        }
    };
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    run_worker(
        deps,
        WorkerOptions {
            concurrency: 4,
            until_idle: true,
            sweep_every: Duration::from_secs(2),
            sweep_grace: Duration::from_secs(3),
        },
        deadline,
        progress,
    )
    .await?;

    step("Result: our payouts against the mock's own record of transfers");
    let list = store.list_payouts(None).await?;
    let mut all_good = true;
    let mut rows = Vec::new();
    for p in list.iter().rev() {
        let detail = store.payout(p.id.as_str()).await?;
        let at_mock = mock.transfers_for_group(p.id.as_str());
        let ok = p.status == PayoutStatus::Paid && at_mock == 1;
        all_good &= ok;
        let lookups = detail
            .events
            .iter()
            .filter(|e| e.reason.starts_with("lookup"))
            .count();
        rows.push(vec![
            p.id.to_string(),
            p.account.to_string(),
            p.amount.to_string(),
            p.status.to_string(),
            p.attempts.to_string(),
            lookups.to_string(),
            at_mock.to_string(),
            if ok { "ok".into() } else { "MISMATCH".into() },
        ]);
    }
    println!(
        "{}",
        render::table(
            &[
                "payout",
                "account",
                "amount",
                "final state",
                "attempts",
                "lookups",
                "transfers at mock",
                "check"
            ],
            &rows
        )
    );
    println!(
        "  mock saw {} requests and made {} transfers for {} payouts",
        mock.requests(),
        mock.transfers().len(),
        list.len()
    );
    all_good &= mock.transfers().len() == list.len();

    if let Some(p) = list.first() {
        step(&format!("Why payout {} is where it is", p.id));
        print!(
            "{}",
            render::payout_detail(&store.payout(p.id.as_str()).await?)
        );
    }

    step("Ledger check");
    let check = store.check_ledger().await?;
    println!("  {}", render::ledger_check(&check));
    all_good &= check.is_ok();
    mock.stop();
    store.close().await;
    println!(
        "\n{}",
        if all_good {
            "Demo complete: every payout paid exactly once despite the faults."
        } else {
            "Demo FAILED: see the mismatches above."
        }
    );
    Ok(if all_good { 0 } else { 1 })
}
