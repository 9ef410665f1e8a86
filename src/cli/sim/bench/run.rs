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
use payouts::storage::Store;

use super::fixture::{BenchDb, Expected, bulk_payees};
use super::{Progress, group, peak_rss_kib, rate, render, rss_text};

pub(super) struct RunOptions {
    pub(super) payees: usize,
    pub(super) dir: Option<PathBuf>,
    pub(super) postgres: Option<String>,
    pub(super) dry_run_only: bool,
    pub(super) json: bool,
}

/// The target for the eligibility pass over 1,000,000 payees (on either backend).
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
    let (dry, dry_time) = dry_run(&store, &period, &progress).await?;
    let (run, run_time) = if opts.dry_run_only {
        progress.say("run: skipped (--dry-run-only)");
        (dry.clone(), Duration::ZERO)
    } else {
        real_run(&store, &period, &progress).await?
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

    let figures = Figures {
        backend,
        payees: opts.payees,
        dry_run_only: opts.dry_run_only,
        expected,
        setup_time,
        dry,
        dry_time,
        run,
        run_time,
        payouts,
        size,
        peak,
        total,
    };
    if opts.json {
        outln!("{}", serde_json::to_string_pretty(&figures.json())?);
    } else {
        outln!();
        outln!(
            "{}",
            render::table(&["phase", "time", "figures"], &figures.table())
        );
    }
    Ok(0)
}

/// The eligibility pass alone: reads every payee's books and writes nothing.
async fn dry_run(
    store: &Store,
    period: &RunPeriod,
    progress: &Progress,
) -> Result<(RunReport, Duration)> {
    progress.say("dry run: run_payouts(period, dry_run = true), the eligibility pass alone");
    let t = Instant::now();
    let dry = store.run_payouts(period, true).await.context("dry run")?;
    let dry_time = t.elapsed();
    progress.say(&format!(
        "dry run: {} eligible of {} considered in {:.2} s",
        group(dry.eligible),
        group(dry.considered),
        dry_time.as_secs_f64()
    ));
    Ok((dry, dry_time))
}

/// The same pass, then every payout, hold, first event and job written.
async fn real_run(
    store: &Store,
    period: &RunPeriod,
    progress: &Progress,
) -> Result<(RunReport, Duration)> {
    progress.say("run: run_payouts(period, dry_run = false), creating every payout");
    let t = Instant::now();
    let run = store.run_payouts(period, false).await.context("run")?;
    let run_time = t.elapsed();
    progress.say(&format!(
        "run: {} payouts created in {:.2} s",
        group(run.created),
        run_time.as_secs_f64()
    ));
    Ok((run, run_time))
}

/// Everything one bench run measured, reported as JSON or as a table.
struct Figures {
    backend: &'static str,
    payees: usize,
    dry_run_only: bool,
    expected: Expected,
    setup_time: Duration,
    dry: RunReport,
    dry_time: Duration,
    run: RunReport,
    run_time: Duration,
    /// Payouts in the database after the run.
    payouts: i64,
    size: u64,
    peak: Option<u64>,
    total: Duration,
}

impl Figures {
    /// Whether both passes found what the fixture was built to contain.
    fn matches(&self) -> bool {
        let (dry, run, expected) = (&self.dry, &self.run, &self.expected);
        dry.eligible == expected.eligible
            && run.eligible == expected.eligible
            && (self.dry_run_only || run.created == expected.eligible)
            && (self.dry_run_only || u64::try_from(self.payouts).unwrap_or(0) == expected.eligible)
            && skipped(run, Skip::AutoPayoutOff) == expected.auto_payout_off
            && skipped(run, Skip::NoMethod) == expected.no_method
            && skipped(run, Skip::BelowMinimum) == expected.below_minimum
            && skipped(run, Skip::SpendGate) == expected.spend_gate
            && dry.skipped == run.skipped
    }

    fn target_secs(&self) -> f64 {
        TARGET_SECS_PER_MILLION * self.payees as f64 / 1e6
    }

    fn json(&self) -> serde_json::Value {
        let run = &self.run;
        serde_json::json!({
            "backend": self.backend,
            "payees": self.payees,
            "setup_secs": self.setup_time.as_secs_f64(),
            "considered": run.considered,
            "eligible": run.eligible,
            "created": run.created,
            "payouts_in_db": self.payouts,
            "skipped": run.skipped.iter().map(|(k, v)| (k.code(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "expected_eligible": self.expected.eligible,
            "matches_fixture": self.matches(),
            "dry_run_secs": self.dry_time.as_secs_f64(),
            "dry_run_payees_per_sec": rate(self.payees, self.dry_time),
            "run_secs": self.run_time.as_secs_f64(),
            "run_payees_per_sec": rate(self.payees, self.run_time),
            "target_dry_run_secs": self.target_secs(),
            "peak_rss_kib": self.peak,
            "database_bytes": self.size,
            "total_secs": self.total.as_secs_f64(),
        })
    }

    fn table(&self) -> Vec<Vec<String>> {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let (dry, run, expected) = (&self.dry, &self.run, &self.expected);
        vec![
            vec![
                "setup: bulk SQL payees".into(),
                secs(self.setup_time),
                format!(
                    "{} payees: accounts, stripe methods, posted accruals (3 postings each)",
                    group(self.payees as u64)
                ),
            ],
            vec![
                "eligibility pass (dry run)".into(),
                secs(self.dry_time),
                format!(
                    "{} payees/s; {} eligible of {} considered (target on either backend: {:.2} s)",
                    group(rate(self.payees, self.dry_time) as u64),
                    group(dry.eligible),
                    group(dry.considered),
                    self.target_secs()
                ),
            ],
            vec![
                "run (payouts, holds, events, jobs)".into(),
                secs(self.run_time),
                format!(
                    "{} payees/s; {} payouts created",
                    group(rate(self.payees, self.run_time) as u64),
                    group(run.created)
                ),
            ],
            vec![
                "skipped, by reason".into(),
                String::new(),
                skipped_text(run),
            ],
            vec![
                "check: figures match the fixture".into(),
                String::new(),
                if self.matches() {
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
            vec![
                "peak RSS (VmHWM)".into(),
                String::new(),
                rss_text(self.peak),
            ],
            vec![
                "database size".into(),
                String::new(),
                format!("{} MiB", group(self.size / (1024 * 1024))),
            ],
            vec!["total".into(), secs(self.total), String::new()],
        ]
    }
}
