//! `payouts demo`: the whole flow on a fresh temporary database against the four provider mocks
//! with faults switched on: ingest, balances, withdrawals on every rail, the worker with
//! webhooks and polling, a late reversal, and a per-rail comparison of our ledger with each
//! mock's own books.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::domain::ids::{AccountId, IdempotencyKey, ProgramId, Rail};
use payouts::domain::money::Currency;
use payouts::domain::payout::{PayoutStatus, RetryPolicy};
use payouts::domain::program::ProgramSet;
use payouts::jobs::{PayoutDeps, WorkerOptions, run_worker};
use payouts::sim::kit::Faults;
use payouts::sim::sandbox::{Sandbox, SandboxOptions};
use payouts::storage::Store;
use payouts::storage::payout_views::WithdrawalRequest;

use crate::cli::render;

const FIXTURE: &str = include_str!("../../../fixtures/demo.ndjson");
const RAILS: &str = include_str!("../../../fixtures/rails.ndjson");
const RUNPOD: &str = include_str!("../../../fixtures/runpod.ndjson");

/// The bonus seed the demo uses when RUNPOD_BONUS_SEED is not set. It is public, so bonuses
/// drawn with it are predictable: never use it outside the demo.
const DEMO_BONUS_SEED: &str = "demo-seed-public-never-use-in-production";

/// Which program and rail each referrer cashes out through in the demo.
const PLAN: [(&str, &str, Rail); 5] = [
    ("ref-alice", "vast", Rail::Stripe),
    ("ref-gina", "vast", Rail::Paypal),
    ("ref-mo", "vast", Rail::Wise),
    ("ref-oli", "vast", Rail::Wise),
    ("rp-nia", "runpod-affiliate", Rail::Partnerstack),
];

pub async fn run() -> Result<i32> {
    let started = Instant::now();
    let step = |text: &str| outln!("\n[{:>5.1}s] {text}", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = open_store(dir.path(), &step).await?;
    let sandbox = start_sandbox(&store, &step).await?;
    ingest_fixtures(&store, &step).await?;

    step("Balances of every referrer");
    for account in store.referrers().await? {
        out!("{}", render::balance(&store.balance(&account).await?));
    }
    out!(
        "{}",
        render::balance(&store.balance(&AccountId::parse("rp-n02")?).await?)
    );

    step("Templates: Vast template referral links and Runpod creator earnings");
    out!("{}", render::templates(&store.template_report().await?));

    let ids = withdraw_everything(&store, &step).await?;
    run_worker_until_final(&store, &sandbox, &step).await?;
    late_reversal(&store, &sandbox, &ids, &step).await?;
    let mut all_good = compare_payouts(&store, &sandbox, &ids, &step).await?;
    all_good &= compare_rails(&store, &sandbox, &step).await?;

    step("Ledger check");
    let check = store.check_ledger().await?;
    outln!("  {}", render::ledger_check(&check));
    all_good &= check.is_ok();

    all_good &= reconcile_demo(&store, &sandbox, &step).await?;
    all_good &= super::demo_trust::statement(&store, &step).await?;
    all_good &= super::demo_trust::holding_period(dir.path(), &step).await?;
    all_good &= super::demo_trust::review(dir.path(), &step).await?;
    all_good &= super::demo_trust::tax_gate(dir.path(), &step).await?;
    sandbox.stop();
    store.close().await;
    outln!(
        "\n{}",
        if all_good {
            "Demo complete: every payout reached the provider's final state, each paid at most once, and every rail's books match the ledger to the cent."
        } else {
            "Demo FAILED: see the mismatches above."
        }
    );
    Ok(if all_good { 0 } else { 1 })
}

/// A fresh SQLite database in `dir` with the vast and runpod presets, shown.
async fn open_store(dir: &std::path::Path, step: &dyn Fn(&str)) -> Result<Store> {
    let db = dir.join("demo.db");
    step(&format!(
        "Creating a fresh SQLite database at {}",
        db.display()
    ));
    let programs = ProgramSet::load(&["vast".into(), "runpod".into()], &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "RUNPOD_BONUS_SEED").then(|| DEMO_BONUS_SEED.to_string()))
    })?;
    // The fixtures onboard payees in three batches a moment apart; a cooling-off would hold
    // every method added in the later ones (see `serve` for the hold in action).
    let store = Store::open_sqlite(&db, Arc::new(programs))
        .await?
        .with_safeguards(payouts::domain::cooling_off::Safeguards {
            method_cooling_off: std::time::Duration::ZERO,
            four_eyes_above: None,
        });
    step("Programs (presets vast and runpod; see programs/*.toml)");
    out!("{}", render::programs(store.programs()));
    Ok(store)
}

/// The four provider mocks, faults on, sending their webhooks to receivers served here.
async fn start_sandbox(store: &Store, step: &dyn Fn(&str)) -> Result<Sandbox> {
    let faults = Faults {
        latency_ms: 25,
        error_rate: 0.15,
        rate_limit_rate: 0.15,
        error_after_commit_rate: 0.1,
        drop_first_attempt: true,
        seed: 2026,
        ..Faults::default()
    };
    let sandbox = Sandbox::start(SandboxOptions {
        faults: faults.clone(),
        ..SandboxOptions::default()
    })
    .await?;
    let hooks = serve_webhooks(&sandbox, store).await?;
    sandbox.send_webhooks_to(Some(&hooks));
    step(&format!(
        "Four mock providers with faults on every one: every first request commits then drops \
         the connection, {:.0}% 500s, {:.0}% 500s after commit, {:.0}% 429s, {} ms latency",
        faults.error_rate * 100.0,
        faults.error_after_commit_rate * 100.0,
        faults.rate_limit_rate * 100.0,
        faults.latency_ms
    ));
    for rail in [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack] {
        outln!("  {rail:<12} {}", sandbox.base_url(rail));
    }
    outln!("  webhooks     {hooks}/<rail> (signed; verified before anything is applied)");
    Ok(sandbox)
}

/// Ingests every fixture, then the Vast and Runpod ones again: the replay must post nothing.
async fn ingest_fixtures(store: &Store, step: &dyn Fn(&str)) -> Result<()> {
    step(
        "Ingesting fixtures/demo.ndjson (Vast), rails.ndjson and runpod.ndjson (Runpod), then demo.ndjson \
         and runpod.ndjson again: the second pass must change nothing",
    );
    let mut first = payouts::app::ingest::ingest(store, FIXTURE.as_bytes(), true).await?;
    payouts::app::ingest::ingest(store, RAILS.as_bytes(), true).await?;
    let runpod = payouts::app::ingest::ingest(store, RUNPOD.as_bytes(), true).await?;
    anyhow::ensure!(
        runpod.rejected.is_empty(),
        "fixtures/runpod.ndjson was rejected: {:?}",
        runpod.rejected
    );
    for (kind, c) in runpod.by_type {
        first.counts(kind).inserted += c.inserted;
    }
    first.referrals_judged += runpod.referrals_judged;
    first.accruals_posted += runpod.accruals_posted;
    let mut second = payouts::app::ingest::ingest(store, FIXTURE.as_bytes(), true).await?;
    let again = payouts::app::ingest::ingest(store, RUNPOD.as_bytes(), true).await?;
    for (kind, c) in again.by_type {
        second.counts(kind).inserted += c.inserted;
        second.counts(kind).updated += c.updated;
    }
    second.accruals_posted += again.accruals_posted;
    anyhow::ensure!(
        second.accruals_posted == 0,
        "a replayed ingest posted {} ledger entries",
        second.accruals_posted
    );
    let inserted: usize = first.by_type.values().map(|c| c.inserted).sum();
    let replay_new: usize = second
        .by_type
        .values()
        .map(|c| c.inserted + c.updated)
        .sum();
    outln!(
        "  first pass: {inserted} records, {} referrals judged, {} commission entries",
        first.referrals_judged,
        first.accruals_posted
    );
    outln!(
        "  second pass: {replay_new} new records, {} commission entries (idempotent)",
        second.accruals_posted
    );
    Ok(())
}

/// Withdraws each referrer's payable balance through its rail in [`PLAN`], checking a
/// repeated request returns the same payout. The ids of the payouts made.
async fn withdraw_everything(store: &Store, step: &dyn Fn(&str)) -> Result<Vec<String>> {
    step("Withdrawing everything payable, each referrer through its rail");
    let mut ids = Vec::new();
    for (account, program_id, rail) in PLAN {
        let account = AccountId::parse(account)?;
        let balance = store.balance(&account).await?;
        let Some(program) = balance.program(program_id, Currency::Usd) else {
            continue;
        };
        if !program.payable_now.is_positive() {
            outln!(
                "  {account}: not withdrawn: {}",
                program.reason.as_deref().unwrap_or("nothing available")
            );
            continue;
        }
        let request = WithdrawalRequest {
            account: account.clone(),
            program: ProgramId::parse(program_id)?,
            rail,
            amount: program.payable_now,
            idempotency_key: IdempotencyKey::parse(&format!("demo-{account}"))?,
        };
        let outcome = store.create_withdrawal(&request).await?;
        // The same request again must return the same payout, not a second one.
        let again = store.create_withdrawal(&request).await?;
        anyhow::ensure!(
            again.replayed && again.payout.id == outcome.payout.id,
            "idempotent retry of a withdrawal created a second payout"
        );
        outln!(
            "  {account}: payout {} of {} via {rail} to {} queued (a repeated request returned the same payout)",
            outcome.payout.id,
            outcome.payout.amount,
            outcome.payout.destination
        );
        ids.push(outcome.payout.id.to_string());
    }
    Ok(ids)
}

/// Runs the worker (retries, lookups, polls, webhooks) until every payout is final,
/// printing the counts per status whenever they change.
async fn run_worker_until_final(
    store: &Store,
    sandbox: &Sandbox,
    step: &dyn Fn(&str),
) -> Result<()> {
    step(
        "Running the payout worker until every payout is final (retries, lookups, polls and webhooks)",
    );
    let deps = Arc::new(PayoutDeps {
        store: store.clone(),
        rails: sandbox.rails()?,
        policy: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            settle_delay: Duration::from_secs(1),
            poll_base: Duration::from_secs(1),
            poll_max: Duration::from_secs(2),
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
            outln!("  [{:>4.1}s] {line}", clock.elapsed().as_secs_f64());
            *last = line;
        }
    };
    run_worker(
        deps,
        WorkerOptions {
            concurrency: 4,
            until_idle: true,
            sweep_every: Duration::from_secs(2),
            sweep_grace: Duration::from_secs(3),
            schedule: None,
            ..WorkerOptions::default()
        },
        tokio::time::sleep(Duration::from_secs(120)),
        progress,
    )
    .await?;
    Ok(())
}

/// PayPal reverses ref-gina's delivered payout: it must come back as `returned`, and the
/// money be available to cash out again.
async fn late_reversal(
    store: &Store,
    sandbox: &Sandbox,
    ids: &[String],
    step: &dyn Fn(&str),
) -> Result<()> {
    step("A late failure: PayPal reverses ref-gina's payout after it was delivered");
    if let Some(gina) = find(store, ids, Rail::Paypal).await? {
        let batch = gina.provider_ref.clone().unwrap_or_default();
        sandbox.paypal.advance(&batch, "REVERSED");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && store.payout(gina.id.as_str()).await?.payout.status != PayoutStatus::Returned
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let detail = store.payout(gina.id.as_str()).await?;
        let balance = store.balance(&gina.account).await?;
        outln!(
            "  payout {} is now {}; {} can cash out {} again",
            gina.id,
            detail.payout.status,
            gina.account,
            balance
                .program("vast", Currency::Usd)
                .map(|p| p.available.to_string())
                .unwrap_or_default()
        );
        out!("{}", render::payout_detail(&detail));
    }
    Ok(())
}

/// Per payout: final, paid at most once at the mock, and for the amount we say. Whether all
/// of them are.
async fn compare_payouts(
    store: &Store,
    sandbox: &Sandbox,
    ids: &[String],
    step: &dyn Fn(&str),
) -> Result<bool> {
    step("Result per payout: our state against each mock's own books");
    let mut all_good = true;
    let mut rows = Vec::new();
    for id in ids {
        let detail = store.payout(id).await?;
        let p = &detail.payout;
        let (payments, delivered) = sandbox.payments_for(p.rail, id);
        let expected = match p.status {
            PayoutStatus::Paid => p.amount.to_minor_units()?,
            _ => 0,
        };
        let ok = p.status.is_final() && payments == 1 && delivered == expected;
        all_good &= ok;
        let lookups = detail
            .events
            .iter()
            .filter(|e| e.source.as_deref() == Some("lookup"))
            .count();
        let webhooks = detail
            .events
            .iter()
            .filter(|e| e.source.as_deref() == Some("webhook"))
            .count();
        rows.push(vec![
            p.account.to_string(),
            p.rail.to_string(),
            p.amount.to_string(),
            p.status.to_string(),
            p.provider_status.clone().unwrap_or_default(),
            p.attempts.to_string(),
            lookups.to_string(),
            webhooks.to_string(),
            payments.to_string(),
            if ok { "ok".into() } else { "MISMATCH".into() },
        ]);
    }
    outln!(
        "{}",
        render::table(
            &[
                "account",
                "rail",
                "amount",
                "our state",
                "provider says",
                "attempts",
                "lookups",
                "webhook moves",
                "payments at mock",
                "check"
            ],
            &rows
        )
    );
    Ok(all_good)
}

/// Per rail: the money each mock moved against what our ledger says left. Whether every
/// rail matches.
async fn compare_rails(store: &Store, sandbox: &Sandbox, step: &dyn Fn(&str)) -> Result<bool> {
    let mut all_good = true;
    step("Result per rail: money the mock moved against what our ledger says left");
    let ledger = store.paid_out_by_rail().await?;
    let mut rows = Vec::new();
    for rail in [Rail::Stripe, Rail::Paypal, Rail::Wise, Rail::Partnerstack] {
        let payments = sandbox.moved(rail).len();
        let at_mock = sandbox.delivered_total(rail);
        let ours: i64 = ledger
            .iter()
            .filter(|t| t.rail == rail)
            .map(|t| t.amount.to_minor_units())
            .sum::<Result<i64, _>>()?;
        let ok = at_mock == ours;
        all_good &= ok;
        rows.push(vec![
            rail.to_string(),
            payments.to_string(),
            cents(at_mock),
            cents(ours),
            if ok { "ok".into() } else { "MISMATCH".into() },
        ]);
    }
    outln!(
        "{}",
        render::table(
            &[
                "rail",
                "payments at mock",
                "delivered (mock)",
                "paid out (ledger)",
                "check"
            ],
            &rows
        )
    );
    Ok(all_good)
}

/// Finance's view: reconcile today against every mock's own records (all must match), then
/// have someone send money at Stripe that no payout asked for, and catch it as critical.
async fn reconcile_demo(store: &Store, sandbox: &Sandbox, step: &dyn Fn(&str)) -> Result<bool> {
    use payouts::domain::reconcile::{ExceptionKind, Period, Severity, Tolerances};
    use payouts::reconcile::report::Report;
    use payouts::reconcile::{Quiet, ReconcileRequest, RecordsFrom, reconcile};
    use secrecy::ExposeSecret;

    // Finance reads once the storm is over: the listings are not what the faults test.
    sandbox.set_faults(Faults::default());
    let rails = sandbox.rails()?;
    let request = ReconcileRequest {
        period: Period::day(chrono::Utc::now().date_naive()),
        rails: Vec::new(),
        from: RecordsFrom::Api,
        trigger: payouts::storage::Trigger::Cli,
        tolerances: Tolerances::default(),
        run_id: None,
    };
    step("Reconciliation: every record at the four providers against our payouts");
    let clean = reconcile(store, &rails, &request, &Quiet).await?;
    out!(
        "{}",
        crate::cli::reconcile::text(&Report::new(clean.clone(), Vec::new()))
    );
    let clean_ok = clean.all_matched() && clean.exceptions.total == 0;

    step("Someone with the Stripe key sends 250.00 USD that no payout asked for");
    let stripe = sandbox.stripe_config();
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/transfers", sandbox.base_url(Rail::Stripe)))
        .bearer_auth(stripe.secret_key.expose_secret())
        .form(&[
            ("amount", "25000"),
            ("currency", "usd"),
            ("destination", "acct_unknown_payee"),
            ("description", "manual transfer from the dashboard"),
        ])
        .send()
        .await?;
    if !sent.status().is_success() {
        anyhow::bail!(
            "the mock refused the injected transfer: {}",
            sent.text().await?
        );
    }
    let caught = reconcile(store, &rails, &request, &Quiet).await?;
    let exceptions = store.recon_exceptions(&caught.id, false).await?;
    let report = Report::new(caught, exceptions);
    out!("{}", crate::cli::reconcile::text(&report));
    let caught_ok = matches!(report.exceptions.as_slice(), [one]
        if one.exception.kind == ExceptionKind::UnknownAtProvider
            && one.exception.severity == Severity::Critical);
    outln!(
        "  {}",
        match (clean_ok, caught_ok) {
            (true, true) =>
                "every payout matched its provider record, and the stray transfer was caught as critical",
            (false, _) => "RECONCILIATION FAILED: the first run should have matched everything",
            (true, false) =>
                "RECONCILIATION FAILED: the stray transfer was not caught as one critical exception",
        }
    );
    Ok(clean_ok && caught_ok)
}

/// USD cents as dollars, for the per-rail table (all demo payouts are USD).
fn cents(minor: i64) -> String {
    format!("{}.{:02} USD", minor / 100, minor % 100)
}

async fn find(
    store: &Store,
    ids: &[String],
    rail: Rail,
) -> Result<Option<payouts::storage::payout_views::PayoutView>> {
    for id in ids {
        let p = store.payout(id).await?.payout;
        if p.rail == rail {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Serves the webhook receivers in-process on an ephemeral loopback port.
async fn serve_webhooks(sandbox: &Sandbox, store: &Store) -> Result<String> {
    let state = sandbox.webhook_state(store.clone())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, payouts::http::router(state)).await {
            tracing::error!(error = %e, "demo webhook server stopped");
        }
    });
    Ok(format!("http://{addr}/webhooks"))
}
