//! `bench run`: the eligibility pass of a scheduled payout run over many payees.
//!
//! Payees are written with bulk SQL on a fresh SQLite database (see `fixture`), one in five
//! skipped for one of four reasons. Then `Store::run_payouts` is timed twice on the same
//! period: first as a dry run (the eligibility pass alone: it reads every payee's books and
//! writes nothing), then for real (the same pass, then every payout, hold, first event and job
//! written in one transaction).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payouts::domain::payout_run::{RunPeriod, RunReport, Skip};

use super::fixture::{BenchDb, Expected, bulk_payees};
use super::{Progress, group, peak_rss_kib, rate, render, rss_text};

pub(super) struct RunOptions {
    pub(super) payees: usize,
    pub(super) dir: Option<PathBuf>,
    pub(super) postgres: Option<String>,
    pub(super) dry_run_only: bool,
    pub(super) json: bool,
}

/// The target for the eligibility pass over 1,000,000 payees (on PostgreSQL).
const TARGET_SECS_PER_MILLION: f64 = 5.0;

fn skipped(report: &RunReport, why: Skip) -> u64 {
    report.skipped.get(&why).copied().unwrap_or(0)
}

fn skipped_text(report: &RunReport) -> String {
    if report.skipped.is_empty() {
        return "none".into();
    }
    report
        .skipped
        .iter()
        .map(|(why, n)| format!("{} {}", group(*n), why.code()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn run(opts: RunOptions) -> Result<i32> {
    anyhow::ensure!(opts.payees > 0, "--payees must be at least 1");
    let progress = Progress {
        started: Instant::now(),
        to_stderr: opts.json,
    };
    let db = BenchDb::create(opts.dir.as_ref(), opts.postgres.as_deref()).await?;
    let store = db.open().await?;
    progress.say(&format!(
        "bench run: {} payees; database {}",
        group(opts.payees as u64),
        db.describe()
    ));

    let t = Instant::now();
    bulk_payees(&store, opts.payees, true, &progress).await?;
    let setup_time = t.elapsed();
    let expected = Expected::of(opts.payees, true);

    let period = RunPeriod::parse("bench-run").context("the bench period")?;
    progress.say("dry run: run_payouts(period, dry_run = true), the eligibility pass alone");
    let t = Instant::now();
    let dry = store.run_payouts(&period, true).await.context("dry run")?;
    let dry_time = t.elapsed();
    progress.say(&format!(
        "dry run: {} eligible of {} considered in {:.2} s",
        group(dry.eligible),
        group(dry.considered),
        dry_time.as_secs_f64()
    ));

    let (run, run_time) = if opts.dry_run_only {
        progress.say("run: skipped (--dry-run-only)");
        (dry.clone(), Duration::ZERO)
    } else {
        progress.say("run: run_payouts(period, dry_run = false), creating every payout");
        let t = Instant::now();
        let run = store.run_payouts(&period, false).await.context("run")?;
        let run_time = t.elapsed();
        progress.say(&format!(
            "run: {} payouts created in {:.2} s",
            group(run.created),
            run_time.as_secs_f64()
        ));
        (run, run_time)
    };
    let payouts: i64 = payouts::on_backend!(&store, s => {
        sqlx::query_scalar("SELECT COUNT(*) FROM payouts")
            .fetch_one(s.pool())
            .await
    })?;
    let size = db.size_bytes(&store).await;
    store.close().await;
    let backend = db.backend();
    db.remove().await?;
    let peak = peak_rss_kib();
    let total = progress.started.elapsed();

    let matches = dry.eligible == expected.eligible
        && run.eligible == expected.eligible
        && (opts.dry_run_only || run.created == expected.eligible)
        && (opts.dry_run_only || u64::try_from(payouts).unwrap_or(0) == expected.eligible)
        && skipped(&run, Skip::AutoPayoutOff) == expected.auto_payout_off
        && skipped(&run, Skip::NoMethod) == expected.no_method
        && skipped(&run, Skip::BelowMinimum) == expected.below_minimum
        && skipped(&run, Skip::SpendGate) == expected.spend_gate
        && dry.skipped == run.skipped;
    let target_secs = TARGET_SECS_PER_MILLION * opts.payees as f64 / 1e6;

    if opts.json {
        let figures = serde_json::json!({
            "backend": backend,
            "payees": opts.payees,
            "setup_secs": setup_time.as_secs_f64(),
            "considered": run.considered,
            "eligible": run.eligible,
            "created": run.created,
            "payouts_in_db": payouts,
            "skipped": run.skipped.iter().map(|(k, v)| (k.code(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "expected_eligible": expected.eligible,
            "matches_fixture": matches,
            "dry_run_secs": dry_time.as_secs_f64(),
            "dry_run_payees_per_sec": rate(opts.payees, dry_time),
            "run_secs": run_time.as_secs_f64(),
            "run_payees_per_sec": rate(opts.payees, run_time),
            "target_dry_run_secs": target_secs,
            "peak_rss_kib": peak,
            "database_bytes": size,
            "total_secs": total.as_secs_f64(),
        });
        outln!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(0);
    }

    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let rows = vec![
        vec![
            "setup: bulk SQL payees".into(),
            secs(setup_time),
            format!(
                "{} payees: accounts, stripe methods, posted accruals (3 postings each)",
                group(opts.payees as u64)
            ),
        ],
        vec![
            "eligibility pass (dry run)".into(),
            secs(dry_time),
            format!(
                "{} payees/s; {} eligible of {} considered (target on PostgreSQL: {:.2} s)",
                group(rate(opts.payees, dry_time) as u64),
                group(dry.eligible),
                group(dry.considered),
                target_secs
            ),
        ],
        vec![
            "run (payouts, holds, events, jobs)".into(),
            secs(run_time),
            format!(
                "{} payees/s; {} payouts created",
                group(rate(opts.payees, run_time) as u64),
                group(run.created)
            ),
        ],
        vec![
            "skipped, by reason".into(),
            String::new(),
            skipped_text(&run),
        ],
        vec![
            "check: figures match the fixture".into(),
            String::new(),
            if matches {
                format!("yes ({} eligible expected)", group(expected.eligible))
            } else {
                format!(
                    "NO: expected {} eligible, {} auto_payout_off, {} no_method, {} below_minimum, {} spend_gate",
                    group(expected.eligible),
                    group(expected.auto_payout_off),
                    group(expected.no_method),
                    group(expected.below_minimum),
                    group(expected.spend_gate)
                )
            },
        ],
        vec!["peak RSS (VmHWM)".into(), String::new(), rss_text(peak)],
        vec![
            "database size".into(),
            String::new(),
            format!("{} MiB", group(size / (1024 * 1024))),
        ],
        vec!["total".into(), secs(total), String::new()],
    ];
    outln!();
    outln!("{}", render::table(&["phase", "time", "figures"], &rows));
    Ok(0)
}
