//! One simulated run's world, drawn from its seed: the payees and their spend, the rails they
//! cash out through (some destinations scripted to fail, bounce or be reversed weeks later),
//! the faults each provider mock answers with, how many workers run, and the engine's
//! timing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use payouts::domain::ids::{AccountId, IdempotencyKey, ProgramId, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout::RetryPolicy;
use payouts::domain::program::ProgramSet;
use payouts::domain::program::config::PRESETS;
use payouts::jobs::PayoutDeps;
use payouts::providers::rail::Rails;
use payouts::sim::kit::Faults;
use payouts::sim::sandbox::{Sandbox, SandboxOptions};
use payouts::storage::Store;
use payouts::storage::payout_views::WithdrawalRequest;
use rand::Rng;
use rand::rngs::StdRng;

/// What the simulated payouts rest on: one referrer per payout, its rail and destination.
#[derive(Debug, Clone)]
pub(super) struct Payee {
    pub account: String,
    pub rail: Rail,
    pub destination: String,
}

/// The rails, with the destinations each mock scripts (a plain one most of the time; some
/// that fail, bounce or come back after delivery).
fn destination(rng: &mut StdRng, rail: Rail, i: usize) -> String {
    let roll: f64 = rng.random();
    match rail {
        Rail::Stripe if roll < 0.15 => format!("acct_bounce{i}"),
        Rail::Stripe => format!("acct_1Sim{i}"),
        Rail::Paypal if roll < 0.08 => format!("reverse{i}@example.com"),
        Rail::Paypal if roll < 0.14 => format!("fail{i}@example.com"),
        Rail::Paypal if roll < 0.20 => format!("unclaimed{i}@example.com"),
        Rail::Paypal => format!("payee{i}@example.com"),
        Rail::Wise if roll < 0.10 => "1004".into(),
        Rail::Wise if roll < 0.18 => "1005".into(),
        Rail::Wise => "1001".into(),
        Rail::Partnerstack if roll < 0.08 => "refund_pk_erin".into(),
        Rail::Partnerstack if roll < 0.14 => "fail_pk_dave".into(),
        Rail::Partnerstack if roll < 0.20 => "expire_pk_carol".into(),
        Rail::Partnerstack => "pk_alice".into(),
    }
}

/// Whether a scripted destination returns the money after it was delivered (Stripe's bounce,
/// PayPal's reversal, Wise's bounce and refund, PartnerStack's refund).
pub(super) fn comes_back(destination: &str) -> bool {
    destination.starts_with("acct_bounce")
        || destination.starts_with("reverse")
        || destination == "1004"
        || destination == "refund_pk_erin"
}

/// The payees of a run and the NDJSON the platform would send for them: each referrer
/// referred one user, who spent.
pub(super) fn payees(rng: &mut StdRng, count: usize) -> (Vec<Payee>, String) {
    let mut payees = Vec::with_capacity(count);
    let mut lines = Vec::new();
    for i in 0..count {
        let rail = Rail::ALL[rng.random_range(0..Rail::ALL.len())];
        let payee = Payee {
            account: format!("ref-{i}"),
            rail,
            destination: destination(rng, rail, i),
        };
        let (referrer, user) = (&payee.account, format!("u-{i}"));
        // The referred account is created by the referral itself: only new accounts count.
        for (id, at) in [
            (referrer.as_str(), "2026-01-01"),
            (user.as_str(), "2026-02-01"),
        ] {
            lines.push(format!(
                r#"{{"type":"account","id":"{id}","created_at":"{at}T10:00:00Z","email":"{id}@example.com","country":"US","payment_fingerprint":"fp-{id}"}}"#
            ));
        }
        lines.push(format!(
            r#"{{"type":"referral","program":"vast","referrer":"{referrer}","referred":"{user}","at":"2026-02-01T10:00:00Z"}}"#
        ));
        // The referrer rents nothing itself (a renter may cash out only what its earnings
        // exceed its spend by); its referred user spends once or twice.
        for n in 0..rng.random_range(1..=2) {
            let (account, cents) = (user.as_str(), rng.random_range(50_000..400_000));
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            lines.push(format!(
                r#"{{"type":"usage","id":"use-{i}-{n}","account":"{account}","at":"2026-02-03T00:00:00Z","category":"instance","amount":"{amount}","currency":"USD"}}"#
            ));
        }
        lines.push(format!(
            r#"{{"type":"payout_method","account":"{referrer}","rail":"{}","destination":"{}"}}"#,
            rail.as_str(),
            payee.destination
        ));
        payees.push(payee);
    }
    (payees, lines.join("\n") + "\n")
}

/// The Vast preset, paying through all four rails.
pub(super) fn programs() -> Result<Arc<ProgramSet>> {
    let vast = PRESETS[0].1.replace(
        r#"rails = ["stripe", "paypal", "wise"]"#,
        r#"rails = ["stripe", "paypal", "wise", "partnerstack"]"#,
    );
    anyhow::ensure!(vast != PRESETS[0].1, "the vast preset's rails line moved");
    Ok(Arc::new(ProgramSet::from_toml(
        "vast on every rail",
        &vast,
        &|_| None,
    )?))
}

/// A fault rate: off for about a third of the runs, otherwise up to `max`.
fn rate(rng: &mut StdRng, max: f64) -> f64 {
    if rng.random_bool(0.35) {
        0.0
    } else {
        rng.random_range(0.0..max)
    }
}

/// What every mock answers with in this run.
pub(super) fn faults(rng: &mut StdRng, seed: u64) -> Faults {
    let late = rng.random_bool(0.3);
    Faults {
        error_rate: rate(rng, 0.3),
        rate_limit_rate: rate(rng, 0.3),
        drop_after_commit_rate: rate(rng, 0.3),
        error_after_commit_rate: rate(rng, 0.3),
        drop_first_attempt: rng.random_bool(0.2),
        // Keys forgotten after minutes to hours: shorter than the retries of a long outage.
        key_ttl_ms: if rng.random_bool(0.3) {
            rng.random_range(60_000..7_200_000)
        } else {
            0
        },
        late_commit_rate: if late { rate(rng, 0.3) } else { 0.0 },
        // Beyond the settle delay: the case a lookup cannot see yet.
        late_commit_ms: if late {
            rng.random_range(1_000..120_000)
        } else {
            0
        },
        list_lag_ms: if rng.random_bool(0.3) {
            rng.random_range(1_000..60_000)
        } else {
            0
        },
        seed,
        ..Faults::default()
    }
}

/// The sandbox of the four mocks, holding their webhooks for the simulator to deliver.
pub(super) async fn sandbox(rng: &mut StdRng, faults: Faults) -> Result<Sandbox> {
    let options = SandboxOptions {
        faults,
        // Money comes back hours to days after delivery; a two-step return (Wise's bounce,
        // then refund) still lands inside the watch period (`policy().watch_for`).
        late_after_ms: rng.random_range(3_600_000..(12 * 86_400_000)),
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options)
        .await
        .context("starting the mocks")?;
    sandbox.hold_webhooks();
    Ok(sandbox)
}

/// The engine's timing in simulated runs: real backoffs, leases and watch periods, which
/// the simulated clock passes in microseconds.
pub(super) fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(600),
        poll_base: Duration::from_secs(600),
        poll_max: Duration::from_secs(5 * 86_400),
        watch_for: Duration::from_secs(30 * 86_400),
        ..RetryPolicy::default()
    }
}

/// How long a worker's claim on a payout lasts.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(60);

/// One worker process: its own adapters (and so its own pacers), its own id; and the same
/// worker cut off from the providers (`unreachable`: every request refused before it
/// connects).
pub(super) fn worker(
    store: &Store,
    sandbox: &Sandbox,
    unreachable: &Rails,
    n: usize,
) -> Result<(Arc<PayoutDeps>, Arc<PayoutDeps>)> {
    let deps = |rails| PayoutDeps {
        store: store.clone(),
        rails,
        policy: policy(),
        lease_ttl: LEASE_TTL,
        worker_id: format!("w{n}"),
    };
    Ok((
        Arc::new(deps(sandbox.rails()?)),
        Arc::new(deps(unreachable.clone())),
    ))
}

/// Each payee withdraws what it may cash out, through its rail; refusals are part of the
/// trace (a payee whose balance is too small is refused, as a real one would be).
pub(super) async fn withdraw(
    store: &Store,
    payee: &Payee,
) -> Result<std::result::Result<(String, i64), String>> {
    let account = AccountId::parse(&payee.account)?;
    let program = ProgramId::parse("vast")?;
    let balance = store.balance(&account).await?;
    let Some(amount) = balance
        .program("vast", Currency::Usd)
        .map(|p| p.payable_now)
    else {
        return Ok(Err("no balance".into()));
    };
    let request = WithdrawalRequest {
        account,
        program,
        rail: payee.rail,
        amount,
        idempotency_key: IdempotencyKey::parse(&format!("sim-{}", payee.account))?,
    };
    match store.create_withdrawal(&request).await {
        Ok(outcome) => Ok(Ok((
            outcome.payout.id.to_string(),
            amount.to_minor_units()?,
        ))),
        Err(refused) => Ok(Err(refused.to_string())),
    }
}
